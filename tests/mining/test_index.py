"""The FAISS index on disk: persisted, reloaded, crash-safe, never missing new scenes."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mining
from flywheel.errors import InputError
from flywheel.lake import Lake
from ingest import ingest
from mining import search
from mining.build import publish_index


def shard_files(manifest: dict) -> set[str]:
    return {name for shard in manifest["shards"] for name in shard["files"].values()}


def test_build_persists_and_reloads(lake_copy):
    built = mining.build_index(lake_copy)
    folder = lake_copy.root / "_index"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "flat" and manifest["requested_kind"] == "auto"
    assert manifest["count"] == 72 and manifest["dim"] == 35
    assert manifest["embedding_version"] == "features-v1-d35"
    assert manifest["built_from"]["logs"] == 6 and manifest["built_from"]["scenes"] == 72
    assert len(manifest["shards"]) == 1 and manifest["shards"][0]["count"] == 72
    assert {p.name for p in folder.iterdir()} == {"manifest.json", *shard_files(manifest)}
    assert "_index" not in lake_copy.tables()  # underscore folders are not tables

    loaded = mining.load_index(lake_copy)
    assert loaded.kind == "flat" and loaded.count == 72
    assert list(loaded.scene_ids) == list(built.scene_ids)
    assert sorted(loaded.scene_ids) == sorted(mining.open(lake_copy).catalog().ids)
    query = mining.open(lake_copy).catalog().vectors[:3]
    assert np.array_equal(loaded.search(query, 5)[1], built.search(query, 5)[1])

    # another kind replaces every shard and removes the old files
    again = mining.build_index(lake_copy, kind="hnsw")
    assert again.manifest["shards_kept"] == 0
    assert {p.name for p in folder.iterdir()} == {"manifest.json", *shard_files(again.manifest)}
    assert mining.load_index(lake_copy).kind == "hnsw"


def test_shards_search_like_one_index(lake_copy):
    catalog = mining.open(lake_copy).catalog()
    one = mining.build_index(lake_copy, kind="flat", full=True)
    sharded = mining.build_index(lake_copy, kind="flat", full=True, shard_size=20)
    assert [s.count for s in sharded.shards] == [20, 20, 20, 12]
    again = mining.open(lake_copy).build_index("flat", full=True, shard_size=20)  # the same API
    assert [s.count for s in again.shards] == [20, 20, 20, 12]
    assert [s.start for s in sharded.shards] == [0, 20, 40, 60]
    assert sorted(sharded.scene_ids) == sorted(catalog.ids)  # every scene exactly once
    queries = catalog.vectors[::7]
    for k in (1, 10, 72, 100):  # the merge returns k, and only k that exist
        sims_one, pos_one = one.search(queries, k)
        sims_sharded, pos_sharded = sharded.search(queries, k)
        assert pos_sharded.shape == (len(queries), min(k, 72))
        np.testing.assert_allclose(sims_sharded, sims_one, atol=1e-5)
        same = one.scene_ids[pos_one] == sharded.scene_ids[pos_sharded]
        assert same.mean() > 0.99  # equal up to ties
    # a filter that allows scenes of one shard only: the others are skipped, k still found
    allowed = np.zeros(72, dtype=bool)
    allowed[25:31] = True
    sims, positions = sharded.search(queries, 10, allowed)
    assert (np.sort(positions[:, :6], axis=1) == np.arange(25, 31)).all()
    assert (positions[:, 6:] == -1).all() and np.isinf(sims[:, 6:]).all()


def test_a_rebuild_builds_only_new_and_changed_shards(lake_copy, late_log, drives, monkeypatch):
    first = mining.build_index(lake_copy, kind="hnsw", shard_size=20).manifest
    assert [s["count"] for s in first["shards"]] == [20, 20, 20, 12]
    full_files = [s["files"] for s in first["shards"][:3]]

    published = (lake_copy.root / "_index" / "manifest.json").read_text()
    nothing_new = publish_index(lake_copy, kind="hnsw", shard_size=20)  # what this run did
    assert (nothing_new["shards_kept"], nothing_new["shards_built"]) == (4, 0)
    assert nothing_new["built_at"] == first["built_at"]
    # up to date: the manifest is left alone, so open notebooks keep their caches
    assert (lake_copy.root / "_index" / "manifest.json").read_text() == published

    # a new log: the full shards stay, the partial one is cut again with the new scenes;
    # of the scenes files, only the new one's footer is read (row counts of the others are
    # in the manifest)
    assert ingest([late_log], lake_copy).exit_code == 0
    opened = []
    real_open = Lake.open
    monkeypatch.setattr(Lake, "open", lambda lake, rel: opened.append(rel) or real_open(lake, rel))
    grown = mining.build_index(lake_copy, kind="hnsw", shard_size=20)
    monkeypatch.undo()
    indexed = {seg["file"] for shard in first["shards"] for seg in shard["segments"]}
    now = {lake_copy.relative(f) for f in lake_copy.files("scenes")}
    assert opened == sorted(now - indexed) and len(opened) == 1
    catalog = mining.open(lake_copy).catalog()
    assert grown.manifest["shards_kept"] == 3
    assert [s.entry["files"] for s in grown.shards[:3]] == full_files
    assert grown.count == catalog.count > 72
    assert sorted(grown.scene_ids) == sorted(catalog.ids)
    assert all(s.count <= 20 for s in grown.shards)

    # a log ingested again (its files rewritten): only the shards holding its rows are rebuilt
    log = sorted(drives.glob("*.mcap"))[2]
    assert ingest([log], lake_copy, force=True).exit_code == 0
    redone = mining.build_index(lake_copy, kind="hnsw", shard_size=20).manifest
    assert 0 < redone["shards_built"] < len(redone["shards"])
    fresh = mining.load_index(lake_copy)
    assert sorted(fresh.scene_ids) == sorted(catalog.ids)
    # a notebook holding the earlier index reads only the shards it lacks
    reused = mining.load_index(lake_copy, reuse=grown)
    earlier = {s.entry["files"]["index"]: s.faiss_index for s in grown.shards}
    shared = [s.faiss_index is earlier.get(s.entry["files"]["index"]) for s in reused.shards]
    assert sum(shared) == redone["shards_kept"] > 0
    assert list(reused.scene_ids) == list(fresh.scene_ids)
    folder = lake_copy.root / "_index"
    assert {p.name for p in folder.iterdir()} == {"manifest.json", *shard_files(redone)}

    # the searches see the same neighbours as an index built from scratch
    miner = mining.open(lake_copy)
    scenes = list(catalog.ids[::9])
    incremental = [list(miner.similar(s, k=5).scene_id) for s in scenes]
    miner.build_index("flat", full=True)
    assert [list(miner.similar(s, k=5).scene_id) for s in scenes] == incremental


def test_a_format_1_index_is_read_then_replaced(lake_copy):
    built = mining.build_index(lake_copy, kind="flat").manifest
    path = lake_copy.root / "_index" / "manifest.json"
    old = {k: v for k, v in built.items() if not k.startswith("shards")}
    old.update(format=1, files=built["shards"][0]["files"])
    path.write_text(json.dumps(old))
    assert mining.load_index(lake_copy).count == 72
    rebuilt = mining.build_index(lake_copy, kind="flat").manifest
    assert rebuilt["format"] == 2 and rebuilt["shards_kept"] == 0


def test_a_crash_mid_build_keeps_the_old_index(lake_copy, monkeypatch):
    mining.build_index(lake_copy, kind="flat")
    real = Lake.put

    def crash(self, rel, write):
        if rel.endswith(".ids.parquet"):
            raise KeyboardInterrupt("killed mid-build")
        return real(self, rel, write)

    monkeypatch.setattr(Lake, "put", crash)
    with pytest.raises(KeyboardInterrupt):
        mining.build_index(lake_copy, kind="hnsw")
    monkeypatch.undo()
    loaded = mining.load_index(lake_copy)
    assert loaded.kind == "flat" and loaded.count == 72  # the old index, whole


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw", "ivfpq"])
def test_every_kind_finds_the_same_neighbours_here(lake_copy, kind):
    miner = mining.open(lake_copy)
    scene = miner.sql("SELECT scene_id FROM scenes ORDER BY scene_id LIMIT 1").scene_id[0]
    exact = miner.similar(scene, k=5)
    miner.build_index(kind)
    assert mining.load_index(lake_copy).kind == kind
    assert list(miner.similar(scene, k=5).scene_id) == list(exact.scene_id)


def test_auto_kind_by_size():
    assert mining.choose_kind(mining.FLAT_MAX) == "flat"
    assert mining.choose_kind(mining.FLAT_MAX + 1) == "hnsw"
    with pytest.raises(InputError, match="auto, flat, ivf, hnsw, ivfpq"):
        mining.choose_kind(10, "annoy")


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_scenes_ingested_after_the_build_are_found(lake_copy, late_log, kind):
    miner = mining.open(lake_copy)
    miner.build_index(kind)
    assert ingest([late_log], lake_copy).exit_code == 0
    catalog = miner.catalog()  # reloads: the lake changed
    assert catalog.count > 72
    index = miner.index()
    assert index.count == 72  # not rebuilt: the tail is searched exactly instead
    late = [s for s in catalog.ids if s not in set(index.scene_ids)]
    assert late
    for scene_id in late[:4]:
        vector = catalog.vectors[catalog.row(scene_id)]
        found = miner.similar(vector, k=3)
        assert found.scene_id[0] == scene_id or found.score[0] == pytest.approx(1.0, abs=1e-6)
        assert miner.similar(scene_id, k=3).shape[0] == 3  # a late scene can be the query
    rare = miner.rare(k=catalog.count)
    assert set(rare.scene_id) == set(catalog.ids)


def test_approximate_filtered_search_never_returns_a_short_list(lake_copy, monkeypatch):
    miner = mining.open(lake_copy)
    miner.build_index("hnsw")
    monkeypatch.setattr(search, "EXACT_FILTERED_MAX", 0)  # force the FAISS ID-selector path
    where = "list_contains(tags, 'night')"
    matching = set(miner.sql(f"SELECT scene_id FROM scenes WHERE {where}").scene_id)
    query = miner.sql("SELECT scene_id FROM scenes WHERE NOT is_night LIMIT 1").scene_id[0]
    for k in (5, len(matching), len(matching) + 3):
        result = miner.similar(query, k=k, where=where)
        assert len(result) == min(k, len(matching)) and set(result.scene_id) <= matching


def test_other_embedding_version_is_rebuilt(lake_copy, capsys):
    mining.build_index(lake_copy)
    path = lake_copy.root / "_index" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["embedding_version"] = "features-v0-d35"
    path.write_text(json.dumps(manifest))
    miner = mining.open(lake_copy)
    miner.similar(miner.sql("SELECT scene_id FROM scenes LIMIT 1").scene_id[0], k=3)
    err = capsys.readouterr().err
    assert "features-v0-d35" in err and "rebuilding" in err
    assert json.loads(path.read_text())["embedding_version"] == "features-v1-d35"


def test_missing_index_is_built_on_first_search(lake_copy, capsys):
    miner = mining.open(lake_copy)
    miner.rare(k=3)
    assert "building" in capsys.readouterr().err
    assert mining.load_index(lake_copy).count == 72


def test_a_lost_shard_file_is_reported_then_rebuilt_alone(lake_copy):
    from flywheel.errors import LakeError

    first = mining.build_index(lake_copy, kind="hnsw", shard_size=20).manifest
    lost = first["shards"][1]["files"]["index"]
    (lake_copy.root / "_index" / lost).unlink()
    with pytest.raises(LakeError, match="flywheel index --full"):
        mining.load_index(lake_copy)
    again = mining.build_index(lake_copy, kind="hnsw", shard_size=20)
    # the lost shard is rebuilt, with the partial last one; the other full shards are kept
    assert (again.manifest["shards_built"], again.manifest["shards_kept"]) == (2, 2)
    kept = [s.entry["files"] for s in again.shards[:2]]
    assert kept == [first["shards"][0]["files"], first["shards"][2]["files"]]
    assert sorted(again.scene_ids) == sorted(mining.open(lake_copy).catalog().ids)


def test_a_crash_mid_build_keeps_the_shards_done(lake_copy, monkeypatch):
    from mining import build as build_module

    real, done = build_module.build_shard, []

    def crash_on_the_third(lake, spec):
        if len(done) == 2:
            raise KeyboardInterrupt("killed mid-build")
        done.append(spec["name"])
        return real(lake, spec)

    monkeypatch.setattr(build_module, "build_shard", crash_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        mining.build_index(lake_copy, kind="hnsw", shard_size=20)
    monkeypatch.undo()
    partial = mining.load_index(lake_copy)  # readable, and what it holds is published
    assert partial.manifest["complete"] is False and [s.count for s in partial.shards] == [20, 20]

    # meanwhile the scenes of the missing shards are searched exactly: nothing is missed
    miner = mining.open(lake_copy)
    catalog = miner.catalog()
    for row in (0, 45, 71):
        vector = catalog.vectors[row]
        assert miner.similar(vector, k=1).scene_id[0] == catalog.ids[row]

    rerun = mining.build_index(lake_copy, kind="hnsw", shard_size=20).manifest
    assert rerun["complete"] and (rerun["shards_kept"], rerun["shards_built"]) == (2, 2)
    assert sorted(mining.load_index(lake_copy).scene_ids) == sorted(catalog.ids)
