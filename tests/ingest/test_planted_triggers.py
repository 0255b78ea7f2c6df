"""Triggers find the generator's planted events: for each kind, the trigger `truth.json` names
(`sim.generate.TRIGGERS`) is added with `flywheel trigger add`, run over 20 generated drives,
and its hits are compared with the planted windows: precision and recall above 0.9, and the
start and end of a found event within 0.5 s of the planted times. An event that straddles a
scene boundary is one hit. The numbers are printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flywheel.lake import Lake
from ingest import ingest
from sim import generate
from tests.faults.conftest import flywheel

TOLERANCE_NS = 500_000_000


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, dict]:
    here = tmp_path_factory.mktemp("planted")
    generate(here / "drives", logs=20, seconds=180.0, seed=29)
    assert ingest(sorted((here / "drives").glob("*.mcap")), here / "lake").exit_code == 0
    truth = json.loads((here / "drives" / "truth.json").read_text())
    return here / "lake", truth


def cli(*args: str, lake: Path):
    done = flywheel(*args, "--lake", str(lake), "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_each_planted_kind_is_found_on_time_by_its_trigger(planted, capsys):
    lake, truth = planted
    query = "SELECT log_id, regexp_extract(source_uri, '[^/]+$') FROM logs"
    files = dict(Lake(lake).connect().execute(query).fetchall())
    for kind, spec in truth["triggers"].items():
        args = ["--when", spec["when"], "--for", str(spec["for_s"]), "--gap", str(spec["gap_s"])]
        cli("trigger", "add", kind, *args, lake=lake)
    cli("trigger", "run", lake=lake)
    lines, failed = [], []
    for kind in truth["triggers"]:
        events = [e for e in truth["events"] if e["kind"] == kind]
        hits = cli("trigger", "hits", kind, lake=lake)
        assert events, f"no {kind} planted: the fixture should plant every kind"

        def overlaps(hit, event):
            return (
                files[hit["log_id"]] == event["log"]
                and hit["start_ns"] <= event["end_ns"]
                and hit["end_ns"] >= event["start_ns"]
            )

        true_hits = sum(any(overlaps(h, e) for e in events) for h in hits)
        found = [e for e in events if any(overlaps(h, e) for h in hits)]
        on_time = sum(
            any(
                overlaps(h, e)
                and abs(h["start_ns"] - e["start_ns"]) <= TOLERANCE_NS
                and abs(h["end_ns"] - e["end_ns"]) <= TOLERANCE_NS
                for h in hits
            )
            for e in found
        )
        precision = true_hits / max(len(hits), 1)
        recall = len(found) / len(events)
        timely = on_time / max(len(found), 1)
        lines.append(
            f"{kind:20} {len(events):3} planted {len(hits):3} hits  precision {precision:.2f}  "
            f"recall {recall:.2f}  start and end within 0.5 s {timely:.2f}"
        )
        if min(precision, recall, timely) <= 0.9:
            failed.append(kind)
    with capsys.disabled():
        print("\nplanted events vs their triggers (20 drives x 180 s, seed 29):")
        print("\n".join(lines))
    assert not failed, "\n".join(lines)


def test_a_planted_event_across_a_scene_boundary_is_one_hit(planted):
    lake, truth = planted
    con = Lake(lake).connect()
    ids = dict(
        con.execute("SELECT regexp_extract(source_uri, '[^/]+$'), log_id FROM logs").fetchall()
    )
    spec = truth["triggers"]["hard_brake"]
    cli("trigger", "add", "brake_once", "--when", spec["when"], "--for", str(spec["for_s"]),
        "--gap", str(spec["gap_s"]), lake=lake)  # fmt: skip
    hits = cli("trigger", "hits", "brake_once", lake=lake)
    straddling = []
    for e in (e for e in truth["events"] if e["kind"] == "hard_brake"):
        (inside,) = con.execute(
            "SELECT count(*) FROM scenes WHERE log_id = ? AND start_ns <= ? AND end_ns > ?",
            [ids[e["log"]], e["end_ns"], e["start_ns"]],
        ).fetchone()
        if inside >= 2:
            straddling.append(e)
    assert straddling, "no planted hard brake crosses a scene boundary in this fixture"
    for e in straddling:
        over = [
            h for h in hits
            if h["log_id"] == ids[e["log"]] and h["start_ns"] <= e["end_ns"]
            and h["end_ns"] >= e["start_ns"]
        ]  # fmt: skip
        assert len(over) == 1 and len(over[0]["scene_ids"]) == 2, (e, over)
