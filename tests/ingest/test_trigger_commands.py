"""Triggers end to end on generated drives with planted events: the CLI of docs/contract.md §9, the
notebook's m.trigger, mine trigger --save, and ingest running the triggers on logs it adds."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

import mining
from flywheel.lake import Lake
from ingest import ingest
from sim import generate
from tests.faults.conftest import flywheel

BRAKE = "accel < -4"


@pytest.fixture(scope="module")
def drives(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trigger-drives")
    generate(out, logs=5, seconds=60.0, seed=17)
    return out


@pytest.fixture
def lake(drives, tmp_path) -> Path:
    root = tmp_path / "lake"
    logs = sorted(drives.glob("*.mcap"))
    assert ingest(logs[:4], root).exit_code == 0
    return root


def planted(drives: Path, lake: Path, kind: str) -> list[tuple[str, int, int]]:
    """(log_id, start_ns, end_ns) of the generator's planted events of `kind` in the lake."""
    truth = json.loads((drives / "truth.json").read_text())
    ids = dict(
        Lake(lake)
        .connect()
        .execute("SELECT regexp_extract(source_uri, '[^/]+$'), log_id FROM logs")
        .fetchall()
    )
    return [
        (ids[e["log"]], e["start_ns"], e["end_ns"])
        for e in truth["events"]
        if e["kind"] == kind and e["log"] in ids
    ]


def test_trigger_add_list_hits_and_the_planted_hard_brakes(drives, lake):
    added = flywheel(
        "trigger",
        "add",
        "brake",
        "--when",
        BRAKE,
        "--for",
        "0.3",
        "--lake",
        str(lake),
        "--format",
        "json",
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["version"] == 1
    listed = json.loads(flywheel("trigger", "list", "--lake", str(lake), "--format", "json").stdout)
    assert [{k: r[k] for k in ("name", "when", "for_s", "version")} for r in listed] == [
        {"name": "brake", "when": BRAKE, "for_s": 0.3, "version": 1}
    ]
    shown = flywheel("trigger", "hits", "brake", "--lake", str(lake), "--format", "json")
    assert shown.returncode == 0, shown.stderr
    hits = json.loads(shown.stdout)
    assert hits and set(hits[0]) >= {"trigger", "log_id", "start_ns", "end_ns", "scene_ids"}
    assert all(h["end_ns"] - h["start_ns"] >= 0.3e9 and h["scene_ids"] for h in hits)
    events = planted(drives, lake, "hard_brake")
    assert events, "the generator planted no hard brake in these logs"

    # recall: every planted hard brake is found; precision: every hit is one of them
    def overlaps(hit, event):
        return (
            hit["log_id"] == event[0] and hit["start_ns"] <= event[2] and hit["end_ns"] >= event[1]
        )

    assert all(any(overlaps(h, e) for h in hits) for e in events)
    assert all(any(overlaps(h, e) for e in events) for h in hits)
    table = flywheel("trigger", "hits", "brake", "--lake", str(lake))
    assert table.returncode == 0 and hits[0]["log_id"] in table.stdout


def test_the_notebook_matches_the_saved_trigger_and_mine_trigger_saves_its_scenes(lake):
    assert (
        flywheel(
            "trigger", "add", "brake", "--when", BRAKE, "--for", "0.3", "--lake", str(lake)
        ).returncode
        == 0
    )
    m = mining.open(lake)
    adhoc = m.trigger(when=BRAKE, for_=0.3)
    saved = json.loads(
        flywheel("trigger", "hits", "brake", "--lake", str(lake), "--format", "json").stdout
    )
    assert adhoc["trigger"].isna().all() and str(adhoc["start_ns"].dtype) == "int64"
    assert [(r.log_id, r.start_ns, r.end_ns) for r in adhoc.itertuples()] == [
        (h["log_id"], h["start_ns"], h["end_ns"]) for h in saved
    ]
    mined = flywheel(
        "mine", "trigger", "brake", "--save", "brakes", "--lake", str(lake), "--format", "json"
    )
    assert mined.returncode == 0, mined.stderr
    expected = list(dict.fromkeys(s for h in saved for s in h["scene_ids"]))
    assert [r["scene_id"] for r in json.loads(mined.stdout)] == expected
    selection = m.selection("brakes")
    assert list(selection["scene_id"]) == expected
    events = (
        Lake(lake)
        .connect()
        .execute(
            "SELECT count(DISTINCT entity_id) FROM events WHERE stage = 'mined' AND entity_id "
            "IN (SELECT scene_id FROM selections WHERE selection = 'brakes')"
        )
    )
    assert events.fetchone()[0] == len(expected)


def test_ingest_runs_the_triggers_on_the_logs_it_adds(drives, lake):
    assert flywheel("trigger", "add", "brake", "--when", BRAKE, "--lake", str(lake)).returncode == 0
    con = Lake(lake).connect()
    assert con.execute("SELECT count(DISTINCT log_id) FROM trigger_runs").fetchone()[0] == 4
    summary = ingest(sorted(drives.glob("*.mcap")), lake)
    assert summary.exit_code == 0 and set(summary.triggers) == {"brake"}
    con = Lake(lake).connect()
    assert con.execute("SELECT count(DISTINCT log_id) FROM trigger_runs").fetchone()[0] == 5
    runs = con.execute("SELECT count(*) FROM trigger_runs").fetchone()[0]
    again = flywheel("trigger", "run", "--lake", str(lake), "--format", "json")
    assert again.returncode == 0 and json.loads(again.stdout) == {"brake": 0}
    assert Lake(lake).connect().execute("SELECT count(*) FROM trigger_runs").fetchone()[0] == runs


def test_a_changed_definition_is_a_new_version_and_the_old_hits_stay(lake):
    assert flywheel("trigger", "add", "b", "--when", BRAKE, "--lake", str(lake)).returncode == 0
    first = json.loads(
        flywheel("trigger", "hits", "b", "--lake", str(lake), "--format", "json").stdout
    )
    changed = flywheel(
        "trigger",
        "add",
        "b",
        "--when",
        BRAKE,
        "--for",
        "1.0",
        "--lake",
        str(lake),
        "--format",
        "json",
    )
    assert json.loads(changed.stdout)["version"] == 2
    old = flywheel(
        "trigger", "hits", "b", "--version", "1", "--lake", str(lake), "--format", "json"
    )
    assert json.loads(old.stdout) == first
    new = json.loads(
        flywheel("trigger", "hits", "b", "--lake", str(lake), "--format", "json").stdout
    )
    assert len(new) <= len(first) and all(h["end_ns"] - h["start_ns"] >= 1e9 for h in new)


@pytest.mark.parametrize(
    "when",
    [
        "accel < -4; DROP TABLE logs",
        "(SELECT count(*) FROM logs) > 0",
        "speed IN (SELECT * FROM read_csv('/etc/passwd'))",
        "no_such_signal > 1",
    ],
)
def test_a_refused_condition_exits_2_with_one_line_and_stores_nothing(lake, when):
    result = flywheel("trigger", "add", "bad", "--when", when, "--lake", str(lake))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not Lake(lake).files("triggers")


def test_columns_list_units_and_the_users_own_columns(tmp_path):
    (tmp_path / "flywheel.toml").write_text('[triggers.columns]\nkmh = "speed * 3.6"\n')
    result = flywheel("trigger", "columns", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    for name in (
        "speed",
        "accel",
        "yaw_rate",
        "nearest_m",
        "nearest_in_path_m",
        "nearest_pedestrian_m",
        "nearest_cyclist_m",
        "nearest_vehicle_m",
        "nearest_animal_m",
    ):
        assert name in rows
    assert rows["speed"]["unit"] == "m/s" and rows["accel"]["unit"] == "m/s²"
    assert "kmh" in rows
    (tmp_path / "flywheel.toml").write_text('[triggers.columns]\nbad = "(SELECT 1 FROM logs)"\n')
    refused = flywheel("trigger", "columns", cwd=tmp_path)
    assert refused.returncode in (1, 2) and "logs" in refused.stderr


def test_a_users_column_can_be_used_in_a_trigger(lake, tmp_path):
    (tmp_path / "flywheel.toml").write_text('[triggers.columns]\nbrake_g = "-accel / 9.81"\n')
    added = flywheel(
        "trigger",
        "add",
        "g",
        "--when",
        "brake_g > 0.41",
        "--for",
        "0.3",
        "--lake",
        str(lake),
        cwd=tmp_path,
    )
    assert added.returncode == 0, added.stderr
    hits = json.loads(
        flywheel(
            "trigger", "hits", "g", "--lake", str(lake), "--format", "json", cwd=tmp_path
        ).stdout
    )
    plain = mining.open(lake).trigger(when="accel < -4.0221", for_=0.3)
    assert len(hits) == len(plain) > 0


def test_a_changed_users_column_is_a_new_version_of_the_triggers_using_it(lake, tmp_path):
    def run(*args):
        done = flywheel(*args, "--lake", str(lake), "--format", "json", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    (tmp_path / "flywheel.toml").write_text('[triggers.columns]\nbrake_g = "-accel / 9.81"\n')
    run("trigger", "add", "g", "--when", "brake_g > 0.41", "--for", "0.3")
    run("trigger", "add", "fast", "--when", "speed > 12")
    first = run("trigger", "hits", "g")
    # the same name, another meaning: the trigger using it moves to version 2 and runs again
    (tmp_path / "flywheel.toml").write_text('[triggers.columns]\nbrake_g = "-accel / 5"\n')
    run("trigger", "run")
    versions = {r["name"]: r["version"] for r in run("trigger", "list")}
    assert versions == {"g": 2, "fast": 1}
    again = run("trigger", "hits", "g")
    plain = mining.open(lake).trigger(when="accel < -2.05", for_=0.3)
    assert len(again) == len(plain) > len(first) > 0
    # the first version's hits stay queryable
    from ingest import triggers

    assert len(triggers.hits(lake, "g", version=1)) == len(first)
    # a column a trigger uses that the configuration dropped: a clear refusal, nothing run
    (tmp_path / "flywheel.toml").write_text("")
    refused = flywheel("trigger", "run", "--lake", str(lake), cwd=tmp_path)
    assert refused.returncode != 0 and "brake_g" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_similar_and_rare_can_filter_on_a_triggers_hits(lake):
    m = mining.open(lake)
    assert m.similar(m.sql("SELECT scene_id FROM scenes LIMIT 1").scene_id[0], k=3) is not None
    where = "list_contains(triggers, 'brake')"
    assert m.rare(k=5, where=where).empty  # no trigger yet: no scene matches
    assert (
        flywheel(
            "trigger", "add", "brake", "--when", BRAKE, "--for", "0.3", "--lake", str(lake)
        ).returncode
        == 0
    )
    expected = set(m.trigger_scenes("brake")["scene_id"])
    assert expected
    seed = m.sql("SELECT scene_id FROM scenes ORDER BY scene_id LIMIT 1").scene_id[0]
    found = m.similar(seed, k=100, where=where)
    assert set(found["scene_id"]) == expected - {seed}
    assert set(m.rare(k=100, where=where)["scene_id"]) == expected
    both = m.similar(seed, k=100, where=f"{where} AND max_speed > 0")
    assert set(both["scene_id"]) <= expected


def test_the_report_counts_hits_per_trigger_per_week(lake, tmp_path):
    assert flywheel("trigger", "add", "brake", "--when", BRAKE, "--lake", str(lake)).returncode == 0
    hits = json.loads(
        flywheel("trigger", "hits", "brake", "--lake", str(lake), "--format", "json").stdout
    )
    out = tmp_path / "report.html"
    report = flywheel("report", "--lake", str(lake), "--out", str(out), "--format", "json")
    assert report.returncode == 0, report.stderr
    weekly = json.loads(report.stdout)["triggers"]
    shown = [h for h in hits if h["start_ns"] / 1e9 >= time.time() - 26 * 7 * 86400]
    assert shown, "no hit in the report's 26 weeks: pick another seed"
    assert {r["trigger"] for r in weekly} == {"brake"}
    assert sum(r["hits"] for r in weekly) == len(shown)
    assert all(r["hours"] > 0 and r["per_hour"] == r["hits"] / r["hours"] for r in weekly)
    page = out.read_text()
    assert 'id="triggers"' in page and "hits per hour driven" in page


def test_a_parallel_run_gives_the_hits_of_a_serial_one(lake, tmp_path):
    from ingest import triggers

    other = tmp_path / "parallel"
    shutil.copytree(lake, other)
    for root in (lake, other):
        triggers.define(root, "brake", BRAKE, for_s=0.3)
        triggers.define(root, "near", "nearest_m < 15")
    serial = triggers.run(lake)
    ran = flywheel("trigger", "run", "--workers", "2", "--lake", str(other), "--format", "json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == serial
    for name in ("brake", "near"):
        columns = ["log_id", "start_ns", "end_ns"]
        a, b = triggers.hits(lake, name)[columns], triggers.hits(other, name)[columns]
        assert a.equals(b)
    runs = Lake(other).connect().execute("SELECT count(DISTINCT run_id) FROM trigger_runs")
    assert runs.fetchone()[0] == 4  # two parts per trigger, each its own run
