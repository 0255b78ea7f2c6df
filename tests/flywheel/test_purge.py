"""`source revoke --purge` on a real lake (generated logs, ingested under two sources, mined,
labeled, indexed, triggers run, a dataset and a model): exactly the source's rows go, checked
table by table; every other row keeps every value and every file without such rows keeps its
bytes; lineage still names what the model used; searches equal a full index rebuild."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from pathlib import Path

import pytest

import labeling
import mining
from flywheel import schemas, sources
from flywheel.lake import Lake
from flywheel.lineage import lineage
from flywheel.purge import LINEAGE_TABLES
from ingest import ingest, triggers
from labeling import SimulatedVendor, datasets
from metrics.track import track
from sim import generate

START = dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC)


def purge_lake(folder: Path) -> Path:
    """Four logs (two per source), every stage run once on them."""
    drives = folder / "drives"
    generate(drives, logs=4, seconds=30, seed=8)
    root = folder / "lake"
    sources.add(root, "fleet", "internal")
    sources.add(root, "partner", "partner EULA", until="2099-01-01")
    files = sorted(drives.glob("*.mcap"))
    assert ingest(files[:2], root, source="fleet").exit_code == 0
    assert ingest(files[2:], root, source="partner").exit_code == 0
    triggers.define(root, "brake", "accel < -2")
    triggers.run(root)
    m = mining.open(root)
    m.save("all", m.sql("SELECT scene_id, 1.0 AS score FROM scenes ORDER BY scene_id"))
    mining.build_index(root, "flat")
    now = [START]
    vendor = SimulatedVendor.for_lake(
        root, now=lambda: now[0], turnaround_median=dt.timedelta(minutes=1)
    )
    labeling.submit(root, "all", vendor, batch_size=5)
    now[0] += dt.timedelta(days=1)
    labeling.sync(root, vendor)
    version = datasets.create(root, "everything", selection="all")
    batch = Lake(root).read("tasks")["batch_id"][0].as_py()
    track(root, "trained", "det-1", datasets=[version.ref], batches=[batch])
    track(root, "deployed", "det-1")
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return purge_lake(tmp_path_factory.mktemp("purge"))


@pytest.fixture
def lake(built, tmp_path) -> Path:
    target = tmp_path / "lake"
    shutil.copytree(built, target, ignore=shutil.ignore_patterns("_locks"))
    return target


def rows(root: Path) -> dict[str, list[dict]]:
    """Every table's visible rows, in a stable order."""
    lake = Lake(root)
    out = {}
    for table in schemas.TABLES:
        data = lake.read(table).to_pylist()
        out[table] = sorted(data, key=repr)
    return out


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for table in schemas.TABLES
        for p in (root / table).rglob("*.parquet")
    }


def belongs(row: dict, logs: set[str], scenes: set[str]) -> bool:
    ids = logs | scenes
    return row.get("log_id") in logs or row.get("scene_id") in scenes or row.get("entity_id") in ids


def test_purge_deletes_exactly_the_sources_rows(lake):
    before = rows(lake)
    hashes = file_hashes(lake)
    partner_logs = {r["log_id"] for r in before["logs"] if r["source"] == "partner"}
    partner_scenes = {r["scene_id"] for r in before["scenes"] if r["log_id"] in partner_logs}
    assert len(partner_logs) == 2 and partner_scenes

    result = sources.revoke(lake, "partner", purge=True)
    after = rows(lake)
    for table in schemas.TABLES:
        if table in LINEAGE_TABLES:
            continue  # lineage records stay (sources gains revoked_at)
        kept = [r for r in before[table] if not belongs(r, partner_logs, partner_scenes)]
        assert after[table] == kept, table
        gone = len(before[table]) - len(kept)
        assert result["purged"].get(table, 0) == gone, table
    for table in ("logs", "ego", "objects", "scenes", "selections", "tasks", "labels", "events"):
        assert result["purged"][table] > 0, table
    assert after["datasets"] == before["datasets"]
    assert after["model_inputs"] == before["model_inputs"]
    assert result["models"] == [{"model": "det-1", "deployed": True}]

    # a file that held none of the source's rows was not rewritten
    untouched = {
        rel
        for rel, digest in hashes.items()
        if rel.split("/")[0] not in ("sources",) and file_hashes(lake).get(rel) == digest
    }
    rewritten = set(hashes) - untouched
    fleet_logs = {r["log_id"] for r in before["logs"]} - partner_logs
    for rel in rewritten:
        table, name = rel.split("/")[0], Path(rel).stem
        assert table == "sources" or name.split("@")[0] not in fleet_logs, rel

    # lineage records stay: the model still names the purged logs and the source
    model = lineage(lake).describe_model("det-1")
    assert partner_logs <= set(model["logs"])
    assert "partner" in {s["name"] for s in model["sources"]}
    assert lineage(lake).describe_source("partner")["logs"] == 0


def test_searches_after_a_purge_equal_a_full_rebuild(lake, tmp_path):
    sources.revoke(lake, "partner", purge=True)
    mining.build.refresh(lake)
    rebuilt = tmp_path / "rebuilt"
    shutil.copytree(lake, rebuilt, ignore=shutil.ignore_patterns("_locks", "_index"))
    mining.build_index(rebuilt, "flat", full=True)
    a, b = mining.open(lake), mining.open(rebuilt)
    query = a.sql("SELECT scene_id FROM scenes ORDER BY scene_id LIMIT 1")["scene_id"][0]
    left = a.similar(query, k=5)[["scene_id", "score"]]
    right = b.similar(query, k=5)[["scene_id", "score"]]
    assert left["scene_id"].tolist() == right["scene_id"].tolist()
    assert left["score"].tolist() == pytest.approx(right["score"].tolist())
    assert a.rare(k=5)["scene_id"].tolist() == b.rare(k=5)["scene_id"].tolist()
    partner = set(Lake(lake).read("datasets").to_pandas().query("source == 'partner'").scene_id)
    assert not partner & set(a.rare(k=100)["scene_id"])


def test_a_purged_source_refuses_new_data_but_its_datasets_stay(lake):
    sources.revoke(lake, "partner", purge=True)
    assert datasets.show(lake, "everything@1")["sources"] == ["fleet", "partner"]
    with pytest.raises(Exception, match="revoked"):
        ingest([lake], lake, source="partner")
    again = sources.revoke(lake, "partner", purge=True)  # nothing left: a no-op
    assert again["purged"] == {}
