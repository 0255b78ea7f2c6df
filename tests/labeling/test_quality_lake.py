"""Label quality through the lake: the simulated vendor's faults from flywheel.toml, `label
sync`, `label quality`, the report's quality alerts, `label reject` and dataset versions."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from labeling import SimulatedVendor, TaskSpec
from tests.faults.conftest import flywheel

from .tagged import T0, scenes_lake


def test_the_simulated_vendor_swaps_from_its_fault_time_and_keeps_clean_labels(tmp_path):
    now = [T0]
    after = T0 + dt.timedelta(hours=12)
    fault = {"kind": "swap", "classes": ["hard_brake", "cut_in"], "annotator": "chen.w",
             "after": after.isoformat()}  # fmt: skip
    faulty = SimulatedVendor(tmp_path / "v", now=lambda: now[0], faults=[fault])
    clean = SimulatedVendor(tmp_path / "c", now=lambda: now[0])
    tags = [["hard_brake"], ["cut_in"], ["hard_brake", "cut_in"], ["stopped"]] * 60
    for vendor in (faulty, clean):
        vendor.submit([TaskSpec("b1", f"s{i}", {"tags": t}) for i, t in enumerate(tags[:120])])
    now[0] = T0 + dt.timedelta(hours=12)  # the first tasks complete before the fault begins
    for vendor in (faulty, clean):
        vendor.submit([TaskSpec("b2", f"s{i}", {"tags": t}) for i, t in enumerate(tags[120:])])
    now[0] = T0 + dt.timedelta(days=3)
    got = {u.key: u for u in faulty.changes(None)[0]}
    want = {u.key: u for u in clean.changes(None)[0]}
    assert set(got) == set(want)
    swapped = 0
    for key, update in got.items():
        choices = update.result[0]["value"]["choices"]
        clean_choices = want[key].result[0]["value"]["choices"]
        tag = tags[int(key.split("/s")[1]) + (120 if key.startswith("b2") else 0)]
        assert clean_choices == tag  # no fault: the scene's tags, as before
        if update.annotator == "chen.w" and update.completed_at >= after and len(tag) == 1:
            expected = {"hard_brake": ["cut_in"], "cut_in": ["hard_brake"]}.get(tag[0], tag)
            swapped += expected != tag
            assert choices == expected
        else:
            assert choices == clean_choices  # other annotators, earlier tasks, both classes
    assert swapped > 0


def ok(*args, cwd):
    done = flywheel(*args, "--format", "json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def labeled(tmp_path_factory) -> Path:
    here = tmp_path_factory.mktemp("quality")
    scenes_lake(here / "lake")
    (here / "flywheel.toml").write_text(
        'lake = "lake"\n[labeling]\nturnaround_hours = 0.00003\nbatch_size = 300\n'
        "[labeling.simulated]\nerror_rate = 0.02\nseed = 1\n"
        '[[labeling.simulated.faults]]\nkind = "swap"\nclasses = ["hard_brake", "cut_in"]\n'
        'annotator = "chen.w"\n'
        '[[labeling.simulated.faults]]\nkind = "random"\nannotator = "eli.m"\n'
    )
    ok("mine", "sql", "SELECT scene_id, 1.0 AS score FROM scenes ORDER BY scene_id",
       "--save", "all", cwd=here)  # fmt: skip
    ok("label", "submit", "--selection", "all", "--vendor", "simulated", cwd=here)
    ok("label", "sync", cwd=here)
    return here


def test_quality_names_the_faulty_annotators_and_the_report_alerts(labeled):
    rows = ok("label", "quality", cwd=labeled)
    assert {k for r in rows for k in ("vendor", "annotator", "batch_id", "labels", "agreement",
            "suspect", "reason", "confused")} <= set(rows[0])  # fmt: skip
    suspect = {r["annotator"] for r in rows if r["suspect"] and r["annotator"]}
    assert suspect == {"chen.w", "eli.m"}
    chen = next(r for r in rows if r["annotator"] == "chen.w")
    assert "swap" in chen["reason"] and {tuple(c[:2]) for c in chen["confused"]} == {
        ("cut_in", "hard_brake"), ("hard_brake", "cut_in")}  # fmt: skip
    report = ok("report", cwd=labeled)
    ids = {a["id"]: a for a in report["alerts"] if a["id"].startswith("quality:")}
    assert set(ids) >= {"quality:simulated:chen.w", "quality:simulated:eli.m"}
    listed = ok("label", "quality", "--labels", "quality:simulated:chen.w", cwd=labeled)
    assert listed and {r["annotator"] for r in listed} == {"chen.w"}
    command = ids["quality:simulated:chen.w"]["command"]
    assert command == "flywheel label quality --labels quality:simulated:chen.w"


def test_a_reject_keeps_those_labels_out_of_new_versions(labeled, tmp_path):
    import shutil

    here = tmp_path / "copy"
    shutil.copytree(labeled, here, ignore=shutil.ignore_patterns("_locks"))
    before = ok("dataset", "create", "all", "--selection", "all", cwd=here)
    batches = {r["batch_id"] for r in ok("label", "quality", "--all", cwd=here) if r["batch_id"]}
    rejected_scenes = set()
    for batch in sorted(batches):
        done = ok("label", "reject", batch, "--annotator", "chen.w", cwd=here)
        rejected_scenes |= set(done["scenes"])
    after = ok("dataset", "create", "all", "--selection", "all", cwd=here)
    assert after["version"] == 2 and after["scenes"] == before["scenes"] - len(rejected_scenes)
    exported = ok("dataset", "export", "all@2", "--out", str(here / "out"), cwd=here)
    import pyarrow.parquet as pq

    kept = set(pq.read_table(exported["file"]).column("scene_id").to_pylist())
    assert not kept & rejected_scenes
    ok("track", "trained", "--model", "m", "--dataset", "all@1", cwd=here)
    assert ok("lineage", "model", "m", cwd=here)["rejected_batches"] == sorted(batches)


def test_overlap_and_gold_give_each_annotator_peers_and_a_kappa(tmp_path):
    here = tmp_path
    scenes_lake(here / "lake", n=600, seed=9)
    (here / "flywheel.toml").write_text(
        'lake = "lake"\n[labeling]\nturnaround_hours = 0.00003\nbatch_size = 300\n'
        '[labeling.simulated]\nseed = 2\n[[labeling.simulated.faults]]\nkind = "random"\n'
        'annotator = "eli.m"\n'
    )
    ok("mine", "sql", "SELECT scene_id, 1.0 AS score FROM scenes WHERE log_id = 'log0'",
       "--save", "gold", cwd=here)  # fmt: skip
    ok("label", "submit", "--selection", "gold", "--vendor", "simulated", cwd=here)
    ok("label", "sync", cwd=here)
    ok("mine", "sql", "SELECT scene_id, 1.0 AS score FROM scenes WHERE log_id <> 'log0'",
       "--save", "new", cwd=here)  # fmt: skip
    done = ok("label", "submit", "--selection", "new", "--vendor", "simulated",
              "--overlap", "0.3", "--gold", "gold", cwd=here)  # fmt: skip
    assert set(done) == {"submit", "overlap", "gold"}
    assert 0.2 * 480 < done["overlap"]["scenes"] < 0.4 * 480
    assert 110 <= done["gold"]["scenes"] <= 120  # the gold scenes labeled by then
    ok("label", "sync", cwd=here)
    rows = {r["annotator"]: r for r in ok("label", "quality", "--all", cwd=here) if r["annotator"]}
    assert all(r["overlap"] > 0 for r in rows.values())
    assert rows["eli.m"]["kappa"] < 0.3 < min(r["kappa"] for a, r in rows.items() if a != "eli.m")
    assert rows["eli.m"]["suspect"]
