"""Triggers over hand-built signals: runs, --for, --gap, --then/--within, scene boundaries,
versions and incremental runs, through the public API."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from flywheel import schemas
from flywheel.errors import InputError, QueryError
from flywheel.lake import Lake
from ingest import triggers

T0 = 1_700_000_000_000_000_000
HZ = 10
NS = 1_000_000_000


def add_log(
    lake: Lake, log_id: str, accel: np.ndarray, objects: list[dict] | None = None
) -> np.ndarray:
    """A published log with ego samples at 10 Hz (accel as given), objects, 10 s scenes."""
    n = len(accel)
    t = T0 + np.arange(n, dtype=np.int64) * (NS // HZ)
    speed = np.maximum(0.0, 15.0 + np.cumsum(accel) / HZ)
    ego = {
        "log_id": [log_id] * n,
        "t_ns": t,
        "x": np.cumsum(speed) / HZ,
        "y": np.zeros(n),
        "yaw": np.zeros(n),
        "speed": speed,
        "accel": accel.astype(float),
        "yaw_rate": np.zeros(n),
    }
    lake.write("ego", schemas.filled(ego, schemas.SCHEMAS["ego"], n), name=log_id)
    if objects:
        table = {k: [o[k] for o in objects] for k in objects[0]}
        table["log_id"] = [log_id] * len(objects)
        lake.write(
            "objects", schemas.filled(table, schemas.SCHEMAS["objects"], len(objects)), name=log_id
        )
    starts = np.arange(T0, t[-1] + 1, 10 * NS, dtype=np.int64)
    scenes = {
        "scene_id": [f"{log_id}-{i:05d}" for i in range(len(starts))],
        "log_id": [log_id] * len(starts),
        "start_ns": starts,
        "end_ns": starts + 10 * NS,
    }
    lake.write(
        "scenes", schemas.filled(scenes, schemas.SCHEMAS["scenes"], len(starts)), name=log_id
    )
    logs = {
        "log_id": [log_id],
        "source_uri": [f"file:///{log_id}.mcap"],
        "start_ns": [int(t[0])],
        "end_ns": [int(t[-1])],
        "ingested_at": pa.array([dt.datetime.now(dt.UTC)], schemas.UTC_TS),
    }
    lake.write("logs", schemas.filled(logs, schemas.SCHEMAS["logs"], 1), name=log_id)
    return t


def pattern(spec: str) -> np.ndarray:
    """'..##..#' -> accel: '#' is -5 (braking), '.' is 0, one character per sample."""
    return np.array([-5.0 if c == "#" else 0.0 for c in spec])


def spans(lake: Lake, name: str) -> list[tuple[int, int]]:
    frame = triggers.hits(lake, name)
    return [
        ((s - T0) // (NS // HZ), (e - T0) // (NS // HZ))
        for s, e in zip(frame.start_ns, frame.end_ns, strict=True)
    ]


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(tmp_path / "lake")


def test_a_hit_is_a_maximal_run_and_for_keeps_the_long_ones(lake):
    add_log(lake, "a", pattern("..###....##########...#"))
    triggers.define(lake, "brake", when="accel < -4")
    triggers.define(lake, "long_brake", when="accel < -4", for_s=0.5)
    triggers.run(lake)
    assert spans(lake, "brake") == [(2, 4), (9, 18), (22, 22)]
    assert spans(lake, "long_brake") == [(9, 18)]  # 0.9 s; 0.2 s and 0 s are too short


def test_gap_bridges_short_false_runs_only(lake):
    add_log(lake, "a", pattern("###.###..###....###"))
    triggers.define(lake, "bridged", when="accel < -4", gap_s=0.25)
    triggers.run(lake)
    # a one-sample gap is 0.2 s between the runs' samples; two missing samples are 0.3 s
    assert spans(lake, "bridged") == [(0, 6), (9, 11), (16, 18)]


def test_then_within_spans_both_runs(lake):
    # near a pedestrian (samples 2-5), then braking 3 samples later; later braking too late
    accel = pattern("........###.................###")
    peds = [
        {
            "t_ns": T0 + i * NS // HZ,
            "track_id": "p1",
            "category": "pedestrian",
            "x": 8.0,
            "y": 0.5,
            "distance": 8.0,
            "length": 0.6,
            "width": 0.6,
            "score": 0.9,
        }
        for i in range(2, 6)
    ]
    add_log(lake, "a", accel, peds)
    triggers.define(
        lake, "ped_then_brake", when="nearest_pedestrian_m < 10", then="accel < -4", within_s=0.5
    )
    triggers.run(lake)
    assert spans(lake, "ped_then_brake") == [(2, 10)]


def test_a_hit_across_a_scene_boundary_is_one_hit_listing_both_scenes(lake):
    accel = np.zeros(250)
    accel[95:105] = -5.0  # 9.5 s to 10.4 s: the boundary is at 10 s
    add_log(lake, "a", accel)
    triggers.define(lake, "brake", when="accel < -4")
    triggers.run(lake)
    frame = triggers.hits(lake, "brake")
    assert len(frame) == 1
    assert list(frame.scene_ids[0]) == ["a-00000", "a-00001"]


def test_in_path_follows_the_contract(lake):
    objs = [
        # ahead and within 1.5 m of the centre line: in the path
        {
            "t_ns": T0,
            "track_id": "1",
            "category": "car",
            "x": 20.0,
            "y": 1.4,
            "distance": 20.0,
            "length": 4.0,
            "width": 2.0,
            "score": 0.9,
        },
        # ahead but beside the lane: not in the path, but the nearest object
        {
            "t_ns": T0,
            "track_id": "2",
            "category": "cyclist",
            "x": 5.0,
            "y": 3.0,
            "distance": 5.8,
            "length": 2.0,
            "width": 1.0,
            "score": 0.9,
        },
        # behind: never in the path
        {
            "t_ns": T0,
            "track_id": "3",
            "category": "truck",
            "x": -4.0,
            "y": 0.0,
            "distance": 4.0,
            "length": 9.0,
            "width": 2.5,
            "score": 0.9,
        },
    ]
    add_log(lake, "a", np.zeros(3), objs)
    con = lake.connect()
    frame = triggers.frame(con)
    first = frame[frame.t_ns == T0].iloc[0]
    assert first.nearest_m == 4.0
    assert first.nearest_in_path_m == 20.0
    assert first.nearest_cyclist_m == 5.8
    assert first.nearest_vehicle_m == 4.0  # car, truck, bus… are vehicles, anywhere around
    assert first.nearest_in_path_vehicle_m == 20.0
    assert np.isnan(first.nearest_pedestrian_m)


def test_runs_are_incremental_and_a_new_version_reevaluates(lake):
    add_log(lake, "a", pattern("..##.."))
    first = triggers.define(lake, "brake", when="accel < -4")
    assert triggers.run(lake) == {"brake": 1}
    assert triggers.run(lake) == {"brake": 0}  # nothing left to do
    add_log(lake, "b", pattern("##...."))
    assert triggers.run(lake) == {"brake": 1}  # only the new log
    assert triggers.define(lake, "brake", when="accel < -4") == first  # same: no new version
    second = triggers.define(lake, "brake", when="accel < -1", for_s=0.1)
    assert second.version == 2
    assert triggers.run(lake) == {"brake": 2}
    assert len(triggers.hits(lake, "brake")) == 2
    assert len(triggers.hits(lake, "brake", version=1)) == 2  # the old version's hits stay


def test_an_unpublished_run_is_invisible_and_rerun(lake):
    add_log(lake, "a", pattern("..##.."))
    triggers.define(lake, "brake", when="accel < -4")
    # a crash after the hits file, before the run rows: write only the hits
    real_write = lake.write

    def crash(table, data, name=None):
        if table == "trigger_runs":
            raise KeyboardInterrupt
        return real_write(table, data, name=name)

    lake.write = crash
    with pytest.raises(KeyboardInterrupt):
        triggers.run(lake)
    lake.write = real_write
    assert len(triggers.hits(lake, "brake")) == 0  # hits without a run are not visible
    assert triggers.run(lake) == {"brake": 1}
    assert len(triggers.hits(lake, "brake")) == 1


@pytest.mark.parametrize(
    "when",
    [
        "accel < -4; DROP TABLE logs",
        "(SELECT count(*) FROM logs) > 0",
        "accel < (SELECT min(accel) FROM read_parquet('/etc/passwd'))",
        "speed > 0) UNION SELECT 1 FROM frame WHERE (true",
        "no_such_column > 1",
    ],
)
def test_refused_conditions_store_nothing(lake, when):
    add_log(lake, "a", pattern("..##.."))
    with pytest.raises((InputError, QueryError)):
        triggers.define(lake, "bad", when=when)
    assert triggers.definitions(lake) == {}


def test_trigger_names_follow_the_name_rule(lake):
    with pytest.raises(InputError):
        triggers.define(lake, "bad name\n", when="accel < -4")
