"""Ingest end to end through the public API: counts, exactly-once, parallelism, bad input."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from flywheel.lake import Lake
from ingest import ingest

TABLES = ("logs", "ego", "gnss", "imu", "objects", "scenes", "events", "quarantine")


def counts(lake: Lake) -> dict[str, int]:
    con = lake.connect()
    return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def detections_in(path) -> int:
    """Objects logged in a file, counted with the reference decoder (an independent oracle)."""
    with open(path, "rb") as handle:
        reader = make_reader(handle, decoder_factories=[DecoderFactory()])
        return sum(
            len(msg.detections)
            for _, _, _, msg in reader.iter_decoded_messages(topics=["/perception/objects"])
        )


def table_rows(lake: Lake, table: str, drop: tuple[str, ...] = ()) -> list[tuple]:
    data = lake.read(table)
    data = data.drop_columns([c for c in drop if c in data.column_names])
    keys = [c for c in ("log_id", "scene_id", "t_ns", "track_id") if c in data.column_names]
    data = data.sort_by([(k, "ascending") for k in keys])
    return [tuple(_hashable(v) for v in row.values()) for row in data.to_pylist()]


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def test_generated_logs_land_with_every_message_once(drives, truth, tmp_path):
    lake = Lake(tmp_path / "lake")
    summary = ingest([drives], lake)
    assert summary.exit_code == 0
    assert summary.count("ingested") == len(truth["logs"])

    con = lake.connect()
    for log in truth["logs"]:
        (log_id,) = con.execute(
            "SELECT log_id FROM logs WHERE source_uri LIKE ?", [f"%/{log['file']}"]
        ).fetchone()
        row = con.execute(
            "SELECT message_count, start_ns, end_ns FROM logs WHERE log_id = ?", [log_id]
        ).fetchone()
        assert row[0] == sum(log["messages"].values())
        assert (row[1], row[2]) == (log["start_ns"], log["end_ns"])
        per_table = {
            t: con.execute(f"SELECT count(*) FROM {t} WHERE log_id = ?", [log_id]).fetchone()[0]
            for t in ("ego", "gnss", "objects", "scenes")
        }
        assert per_table["ego"] == log["messages"]["/odom"]
        assert per_table["gnss"] == log["messages"]["/gnss/fix"]
        assert per_table["objects"] == detections_in(drives / log["file"])
        seconds = (log["end_ns"] - log["start_ns"]) / 1e9
        assert abs(per_table["scenes"] - seconds / 10) <= 1

    # one ingested event per log, at the time the log was committed
    assert con.execute(
        "SELECT count(*) FROM events e JOIN logs l ON e.entity_id = l.log_id "
        "WHERE e.stage = 'ingested' AND e.\"at\" = l.ingested_at"
    ).fetchone()[0] == len(truth["logs"])

    embeddings = np.array(lake.read("scenes", ["embedding"]).column(0).to_pylist())
    assert embeddings.ndim == 2 and embeddings.shape[1] >= 8
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    versions = con.execute("SELECT DISTINCT embedding_version FROM scenes").fetchall()
    assert len(versions) == 1


def test_planted_hard_brakes_are_tagged(drives, truth, tmp_path):
    lake = Lake(tmp_path / "lake")
    ingest([drives], lake)
    con = lake.connect()
    brakes = [e for e in truth["events"] if e["kind"] == "hard_brake"]
    assert brakes, "the generator plants hard brakes with these settings"
    for event in brakes:
        tagged = con.execute(
            "SELECT count(*) FROM scenes s JOIN logs l USING (log_id) "
            "WHERE l.source_uri LIKE ? AND s.start_ns < ? AND s.end_ns > ? "
            "AND list_contains(s.tags, 'hard_brake')",
            [f"%/{event['log']}", event["end_ns"], event["start_ns"]],
        ).fetchone()[0]
        assert tagged >= 1, event


def test_rerun_is_a_reported_noop_and_force_replaces(drives, tmp_path):
    lake = Lake(tmp_path / "lake")
    first = ingest([drives], lake)
    before = counts(lake)
    again = ingest([drives], lake)
    assert again.count("skipped") == len(first.results)
    assert all("--force" in r.reason for r in again.results)
    assert counts(lake) == before
    forced = ingest([drives], lake, force=True)
    assert forced.count("replaced") == len(first.results)
    assert counts(lake) == before


def test_two_workers_give_the_same_rows_as_one(drives, tmp_path):
    serial, parallel = Lake(tmp_path / "serial"), Lake(tmp_path / "parallel")
    ingest([drives], serial, workers=1)
    summary = ingest([drives], parallel, workers=2)
    assert summary.exit_code == 0
    for table in ("ego", "gnss", "imu", "objects", "scenes"):
        assert table_rows(serial, table) == table_rows(parallel, table), table
    drop = ("ingested_at",)
    assert table_rows(serial, "logs", drop) == table_rows(parallel, "logs", drop)


def test_scene_seconds_sets_the_window(drives, tmp_path):
    lake = Lake(tmp_path / "lake")
    ingest([drives], lake, scene_seconds=5)
    lengths = (
        lake.connect()
        .execute(
            "SELECT DISTINCT round((end_ns - start_ns) / 1e9) FROM scenes WHERE end_ns < "
            "(SELECT max(end_ns) FROM scenes s2 WHERE s2.log_id = scenes.log_id)"
        )
        .fetchall()
    )
    assert lengths == [(5.0,)]


def test_topic_map_overrides_recognition(drives, truth, tmp_path):
    lake = Lake(tmp_path / "lake")
    ingest([drives], lake, topic_map={"/perception/objects": "ignore"})
    found = counts(lake)
    assert found["objects"] == 0
    assert found["ego"] == sum(log["messages"]["/odom"] for log in truth["logs"])
    # the objects still count as messages of the log
    total = sum(sum(log["messages"].values()) for log in truth["logs"])
    assert lake.connect().execute("SELECT sum(message_count) FROM logs").fetchone()[0] == total


def test_bad_files_are_quarantined_and_the_rest_ingests(drives_copy, truth, tmp_path):
    good = sorted(drives_copy.glob("*.mcap"))
    data = good[0].read_bytes()
    (drives_copy / "truncated.mcap").write_bytes(data[: len(data) // 2])
    (drives_copy / "empty.mcap").write_bytes(b"")
    (drives_copy / "notes.bag").write_text("these are my notes, not a bag\n")
    (drives_copy / "random.db3").write_bytes(np.random.default_rng(0).bytes(5000))
    lake = Lake(tmp_path / "lake")
    summary = ingest([drives_copy], lake)
    assert summary.exit_code == 1
    status = {r.source_uri.rsplit("/", 1)[-1]: r for r in summary.results}
    assert all(status[p.name].status == "ingested" for p in good)
    assert status["truncated.mcap"].status == "salvaged"
    assert status["truncated.mcap"].message_count > 0
    for name in ("empty.mcap", "notes.bag", "random.db3"):
        assert status[name].status == "quarantined", name
        assert status[name].reason
    rows = dict(lake.connect().execute("SELECT source_uri, reason FROM quarantine").fetchall())
    names = {uri.rsplit("/", 1)[-1] for uri in rows}
    assert names == {"truncated.mcap", "empty.mcap", "notes.bag", "random.db3"}
    assert "cut short" in rows[status["truncated.mcap"].source_uri]
    # the salvaged log is in the lake with what could be read, marked incomplete; a cut file
    # lost its summary, so nothing says how many messages it held
    assert lake.connect().execute(
        "SELECT status, complete, expected_messages FROM logs WHERE log_id = ?",
        [status["truncated.mcap"].log_id],
    ).fetchone() == ("salvaged", False, None)


def test_published_tables_match_the_contract_schemas(drives, tmp_path):
    from flywheel import schemas

    lake = Lake(tmp_path / "lake")
    ingest([drives], lake)
    for table in ("logs", "ego", "gnss", "objects", "scenes", "events"):
        data = lake.read(table)
        schemas.check(table, data)
        assert data.num_rows > 0, table
    categories = set(lake.read("objects", ["category"]).column(0).to_pylist())
    assert {"car", "pedestrian"} <= categories
    assert all(c == c.lower() for c in categories)
    assert pa.types.is_list(lake.read("scenes", ["tags"]).schema.field("tags").type)
