"""Scenes from synthetic ego and object tables with known motion."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from ingest.scenes import (
    HARD_BRAKE_ACCEL,
    SCENE_FEATURES,
    SCENES_SCHEMA,
    TAGS,
    build_scenes,
)

NS = 1_000_000_000
T0 = 1_717_243_200 * NS  # 2024-06-01 12:00:00 UTC: daytime unless a test moves the clock


def ns(seconds) -> np.ndarray:
    return T0 + np.round(np.asarray(seconds, dtype=np.float64) * NS).astype(np.int64)


def drive(seconds: float = 30.0, hz: float = 10.0, brake_at: float | None = None) -> pa.Table:
    """Ego at 10 m/s; from `brake_at`, -6 m/s² for 1.5 s (down to 1 m/s), then steady."""
    t = np.arange(0.0, seconds, 1.0 / hz)
    accel = np.zeros_like(t)
    speed = np.full_like(t, 10.0)
    if brake_at is not None:
        braking = (t >= brake_at) & (t < brake_at + 1.5)
        accel[braking] = -6.0
        speed = np.where(t >= brake_at, np.maximum(10.0 - 6.0 * (t - brake_at), 1.0), 10.0)
    return pa.table(
        {
            "t_ns": ns(t),
            "x": np.cumsum(speed) / hz,
            "y": np.zeros_like(t),
            "yaw": np.zeros_like(t),
            "speed": speed,
            "accel": accel,
            "yaw_rate": np.zeros_like(t),
        }
    )


def track(track_id, category, start, end, x, y, hz=10.0) -> dict[str, list]:
    """Rows of one track from `start` to `end` seconds, x and y moving linearly (a, b) pairs."""
    t = start + np.arange(round((end - start) * hz)) / hz
    f = (t - start) / max(end - start, 1e-9)
    xs = x[0] + (x[1] - x[0]) * f
    ys = y[0] + (y[1] - y[0]) * f
    return {
        "t_ns": list(ns(t)),
        "track_id": [track_id] * t.size,
        "category": [category] * t.size,
        "x": list(xs),
        "y": list(ys),
        "distance": list(np.hypot(xs, ys)),
    }


def objects(*tracks: dict[str, list]) -> pa.Table:
    columns = {key: [v for tr in tracks for v in tr[key]] for key in tracks[0]}
    return pa.table(columns).cast(
        pa.schema(
            [
                ("t_ns", pa.int64()),
                ("track_id", pa.string()),
                ("category", pa.string()),
                ("x", pa.float64()),
                ("y", pa.float64()),
                ("distance", pa.float64()),
            ]
        )
    )


def rows(table: pa.Table) -> list[dict]:
    return table.to_pylist()


def test_windows_are_aligned_to_the_first_sample_with_ids_and_bounds():
    scenes = build_scenes("abc", drive(30.0), None)
    assert scenes.schema == SCENES_SCHEMA
    assert scenes.column("scene_id").to_pylist() == ["abc-00000", "abc-00001", "abc-00002"]
    assert scenes.column("log_id").to_pylist() == ["abc"] * 3
    assert scenes.column("start_ns").to_pylist() == [T0, T0 + 10 * NS, T0 + 20 * NS]
    # the last window ends just after the last sample (29.9 s)
    assert scenes.column("end_ns").to_pylist() == [T0 + 10 * NS, T0 + 20 * NS, ns(29.9) + 1]
    assert scenes.column("n_ego_samples").to_pylist() == [100, 100, 100]
    assert scenes.column("duration_s").to_pylist()[:2] == [10.0, 10.0]


@pytest.mark.parametrize(
    ("seconds", "scene_seconds", "expected"),
    [
        (24.9, 10.0, 2),  # tail of 4.8 s < half a window: dropped
        (25.6, 10.0, 3),  # tail of 5.5 s: kept
        (30.0, 5.0, 6),
        (3.0, 10.0, 1),  # a log shorter than half a window still has its one scene
    ],
)
def test_window_count(seconds, scene_seconds, expected):
    scenes = build_scenes("log", drive(seconds), None, scene_seconds=scene_seconds)
    assert scenes.num_rows == expected


def test_hard_brake_is_tagged_in_exactly_its_window():
    scenes = rows(build_scenes("log", drive(30.0, brake_at=12.0), None))
    assert ["hard_brake" in s["tags"] for s in scenes] == [False, True, False]
    brake = scenes[1]
    assert brake["min_accel"] == pytest.approx(-6.0)
    assert brake["min_accel"] < HARD_BRAKE_ACCEL
    assert brake["max_decel"] == pytest.approx(6.0)
    assert brake["max_jerk"] > 10.0  # the step into and out of -6 m/s²
    assert scenes[0]["max_decel"] == 0.0 and scenes[0]["max_jerk"] == 0.0
    assert scenes[0]["max_speed"] == 10.0 and scenes[0]["mean_speed"] == 10.0
    assert scenes[0]["distance_m"] == pytest.approx(100.0)
    assert scenes[2]["max_speed"] == pytest.approx(1.0)


def test_without_objects_scenes_have_kinematics_and_empty_perception():
    for table in (None, objects(track("a", "car", 0, 1, (10, 10), (0, 0))).slice(0, 0)):
        scenes = rows(build_scenes("log", drive(30.0, brake_at=12.0), table))
        assert len(scenes) == 3
        assert scenes[1]["tags"] == ["hard_brake"]
        for scene in scenes:
            assert scene["n_objects"] == scene["n_tracks"] == scene["n_vehicles"] == 0
            assert scene["min_object_distance"] is None
            assert scene["min_ttc_s"] is None and scene["min_in_path_distance"] is None
            assert scene["categories"] == []
            assert scene["lat"] is None and scene["keyframe_t_ns"] is None


def test_without_ego_there_are_no_scenes():
    some_objects = objects(track("a", "car", 0, 5, (10, 10), (0, 0)))
    for ego in (None, drive(5.0).slice(0, 0)):
        scenes = build_scenes("log", ego, some_objects)
        assert scenes.num_rows == 0
        assert scenes.schema == SCENES_SCHEMA


def test_pedestrian_crossing_the_path():
    # window 0: a pedestrian crosses y from 5 to -5 at x = 15 m over 7 s
    table = objects(track("p1", "pedestrian", 1.0, 8.0, (15, 15), (5, -5)))
    scenes = rows(build_scenes("log", drive(30.0), table))
    crossing = scenes[0]
    assert "pedestrian_in_path" in crossing["tags"]
    assert crossing["n_pedestrians"] == 1 and crossing["n_tracks"] == 1
    assert crossing["n_vehicles"] == 0 and crossing["n_in_path"] == 1
    assert crossing["min_in_path_distance"] == pytest.approx(15.0)
    assert crossing["min_object_distance"] == pytest.approx(15.0, abs=0.01)
    assert crossing["max_track_lateral_speed"] == pytest.approx(10 / 7, rel=0.05)
    assert crossing["categories"] == ["pedestrian"]
    assert crossing["n_objects"] == 70
    assert "cut_in" not in crossing["tags"] and "near_miss" not in crossing["tags"]
    assert all(s["n_pedestrians"] == 0 and not s["tags"] for s in scenes[1:])


def test_vehicle_cutting_in_from_the_adjacent_lane():
    table = objects(
        track("c1", "car", 11.0, 14.0, (12, 12), (3.5, 0.0)),  # cuts in during window 1
        track("c2", "car", 11.0, 19.0, (25, 25), (3.5, 3.5)),  # stays in its lane
        track("c3", "truck", 21.0, 29.0, (20, 20), (0.0, 3.5)),  # leaves the ego lane
    )
    scenes = rows(build_scenes("log", drive(30.0), table))
    assert ["cut_in" in s["tags"] for s in scenes] == [False, True, False]
    assert scenes[1]["n_vehicles"] == 2 and scenes[1]["n_cars"] == 2
    assert scenes[1]["max_track_lateral_speed"] == pytest.approx(3.5 / 3, rel=0.1)
    assert scenes[2]["n_trucks"] == 1 and scenes[2]["n_vehicles"] == 1


def test_closing_object_is_a_near_miss_with_its_time_to_collision():
    # a stopped car in the lane: in the ego frame it approaches at the ego's 10 m/s
    table = objects(track("s1", "car", 20.0, 23.6, (40, 4), (0.2, 0.2)))
    scenes = rows(build_scenes("log", drive(30.0), table))
    last = scenes[2]
    assert last["min_ttc_s"] == pytest.approx(0.5, abs=0.1)  # 5 m at 10 m/s
    assert "near_miss" in last["tags"]
    assert scenes[0]["min_ttc_s"] is None and "near_miss" not in scenes[0]["tags"]


def test_a_lead_car_at_constant_distance_is_not_a_near_miss():
    table = objects(track("lead", "car", 0.0, 29.9, (20, 20), (0.0, 0.0)))
    scenes = rows(build_scenes("log", drive(30.0), table))
    assert all(s["min_ttc_s"] is None and "near_miss" not in s["tags"] for s in scenes)
    assert [s["n_in_path"] for s in scenes] == [1, 1, 1]


def test_animal_and_unknown_classes():
    table = objects(
        track("deer", "Animal", 21.0, 25.0, (30, 30), (1, 1)),
        track("d1", "debris_xyz", 22.0, 24.0, (35, 35), (0, 0)),
        track("c1", "cyclist", 2.0, 5.0, (20, 10), (0.5, 0.5)),
    )
    scenes = rows(build_scenes("log", drive(30.0), table))
    odd = scenes[2]
    assert odd["n_animals"] == 1 and odd["n_other"] == 1
    assert {"animal", "unknown_object"} <= set(odd["tags"])
    assert odd["categories"] == ["animal", "debris_xyz"]
    assert odd["n_vehicles"] == 0 and odd["n_tracks"] == 2
    assert scenes[0]["n_cyclists"] == 1 and "cyclist_in_path" in scenes[0]["tags"]
    assert "animal" not in scenes[0]["tags"] and scenes[0]["n_other"] == 0


def test_detections_without_track_ids_count_as_the_most_seen_at_once():
    cars = [track("", "car", 0.0, 29.9, (10 + 10 * i, 10 + 10 * i), (3.5, 3.5)) for i in range(3)]
    blank = objects(*cars).set_column(1, "track_id", pa.nulls(897, pa.string()))
    for table in (objects(*cars), blank):
        scenes = rows(build_scenes("log", drive(30.0), table))
        assert [s["n_tracks"] for s in scenes] == [3, 3, 3]
        assert [s["n_cars"] for s in scenes] == [3, 3, 3]


def test_unsorted_duplicated_input_gives_the_same_scenes():
    ego = drive(30.0, brake_at=12.0)
    table = objects(
        track("p1", "pedestrian", 1.0, 8.0, (15, 15), (5, -5)),
        track("c1", "car", 11.0, 14.0, (12, 12), (3.5, 0.0)),
    )
    rng = np.random.default_rng(0)
    messy_ego = pa.concat_tables([ego, ego.slice(40, 30)])
    messy_ego = messy_ego.take(rng.permutation(messy_ego.num_rows))
    messy_objects = table.take(rng.permutation(table.num_rows))
    assert build_scenes("log", messy_ego, messy_objects).equals(build_scenes("log", ego, table))


def test_nans_nulls_and_a_single_sample_are_survivable():
    ego = drive(30.0, brake_at=12.0).to_pydict()
    for i in range(0, 300, 7):
        ego["speed"][i] = float("nan")
        ego["accel"][i] = None
        ego["yaw_rate"][i] = float("inf")
    ego["t_ns"][5] = None
    scenes = rows(build_scenes("log", pa.table(ego), None))
    assert len(scenes) == 3
    assert scenes[1]["min_accel"] == pytest.approx(-6.0)
    assert scenes[0]["max_speed"] == 10.0 and scenes[0]["max_abs_yaw_rate"] == 0.0

    single = rows(build_scenes("log", drive(30.0).slice(3, 1), None))
    assert len(single) == 1
    assert single[0]["start_ns"] == ns(0.3) and single[0]["end_ns"] == ns(0.3) + 1
    assert single[0]["max_speed"] == 10.0 and single[0]["max_jerk"] is None

    # windows with no usable ego value at all: nulls, not NaN, and no tags from them
    blank = drive(30.0).set_column(4, "speed", pa.nulls(300, pa.float64()))
    scene = rows(build_scenes("log", blank, None))[0]
    assert scene["max_speed"] is None and scene["mean_speed"] is None
    assert scene["distance_m"] is None and "stopped" not in scene["tags"]


def test_gap_in_ego_data_keeps_an_empty_window():
    ego = drive(40.0)
    t = np.asarray(ego.column("t_ns").to_numpy())
    gap = ego.filter(pa.array((t < ns(10.0)) | (t >= ns(20.0))))
    scenes = rows(build_scenes("log", gap, None))
    assert [s["n_ego_samples"] for s in scenes] == [100, 0, 100, 100]
    assert scenes[1]["max_speed"] is None and scenes[1]["tags"] == []


def test_gnss_gives_place_and_local_time_and_camera_the_keyframe():
    ego = drive(30.0)
    t = np.arange(0.0, 30.0, 0.5)
    gnss = pa.table(
        {
            "t_ns": ns(t),
            "lat": np.where(t < 10, 40.0, 41.0),
            "lon": np.full(t.size, 135.0),  # UTC+9 solar: 12:00 UTC is 21:00 local
            "alt": np.zeros(t.size),
            "status": np.where(t < 20, 0, -1),  # no fix in the last window
        }
    )
    camera = pa.table({"t_ns": ns([2.05, 1.5, 25.0]), "bytes": [10, 20, 30]})
    scenes = rows(build_scenes("log", ego, None, gnss=gnss, camera=camera))
    assert [s["lat"] for s in scenes] == [40.0, 41.0, None]
    assert [s["lon"] for s in scenes] == [135.0, 135.0, None]
    assert scenes[0]["start_hour_local"] == pytest.approx(21.0)
    # the last window has no fix: the log's mean longitude still places it
    assert scenes[2]["start_hour_local"] == pytest.approx(21.0 + 20 / 3600)
    assert all(s["is_night"] and "night" in s["tags"] for s in scenes)
    assert [s["keyframe_t_ns"] for s in scenes] == [ns(1.5), None, ns(25.0)]

    daytime = rows(build_scenes("log", ego, None))  # no GNSS: UTC noon
    assert daytime[0]["start_hour_local"] == pytest.approx(12.0)
    assert daytime[0]["is_night"] is None and "night" not in daytime[0]["tags"]


def test_without_any_fix_no_scene_is_night_whatever_the_clock_says():
    # a robot clock near 0 (1970-01-01 00:00 UTC): UTC midnight is not a local night
    t = np.arange(0.0, 30.0, 0.1)
    ego = pa.table({"t_ns": ns(t), "speed": np.ones_like(t), "accel": np.zeros_like(t)})
    scenes = rows(build_scenes("log", ego, None))
    assert scenes and all(s["is_night"] is None and "night" not in s["tags"] for s in scenes)
    no_fix = pa.table(
        {
            "t_ns": ns(t),
            "lat": np.zeros(t.size),  # (0, 0): what receivers send before their first fix
            "lon": np.zeros(t.size),
            "alt": np.zeros(t.size),
            "status": np.full(t.size, -1),
        }
    )
    scenes = rows(build_scenes("log", ego, None, gnss=no_fix))
    assert all(s["is_night"] is None and "night" not in s["tags"] for s in scenes)


def test_speed_and_turn_tags():
    t = np.arange(0.0, 30.0, 0.1)
    speed = np.select([t < 10, t < 20], [0.1, 30.0], 8.0)
    yaw_rate = np.where(t >= 20, 0.5, 0.0)
    ego = pa.table({"t_ns": ns(t), "speed": speed, "accel": np.zeros_like(t), "yaw_rate": yaw_rate})
    scenes = rows(build_scenes("log", ego, None))
    assert [s["tags"] for s in scenes] == [["stopped"], ["high_speed"], ["sharp_turn"]]
    assert scenes[2]["max_lateral_accel"] == pytest.approx(4.0)


def test_non_driving_logs_flying_aircraft_and_slow_robot():
    # a fixed-wing aircraft pose log at 100 Hz: fast, turning, noisy derived acceleration
    rng = np.random.default_rng(1)
    t = np.arange(0.0, 60.0, 0.01)
    plane = pa.table(
        {
            "t_ns": ns(t),
            "speed": 18.0 + rng.normal(0, 0.5, t.size),
            "accel": rng.normal(0, 1.0, t.size),
            "yaw_rate": 0.6 * np.sin(t / 3),
        }
    )
    scenes = build_scenes("plane", plane, None)
    assert scenes.num_rows == 6
    assert np.all(np.asarray(scenes.column("n_ego_samples")) == 1000)
    assert np.all(np.isfinite(np.asarray(scenes.column("max_jerk"))))

    t = np.arange(0.0, 96.0, 0.1)  # the 5.9 s tail is kept
    robot = pa.table({"t_ns": ns(t), "speed": np.full(t.size, 0.3), "accel": np.zeros(t.size)})
    scenes = rows(build_scenes("robot", robot, None))
    assert len(scenes) == 10 and all(s["tags"] == ["stopped"] for s in scenes)


def test_schema_declares_features_and_tags_in_order():
    names = SCENES_SCHEMA.names
    assert names[:4] == ["scene_id", "log_id", "start_ns", "end_ns"]
    assert "embedding" not in names
    assert all(f in names for f in SCENE_FEATURES)
    assert all(pa.types.is_integer(t) or pa.types.is_floating(t)
               for t in (SCENES_SCHEMA.field(f).type for f in SCENE_FEATURES))  # fmt: skip
    scenes = build_scenes("log", drive(30.0, brake_at=12.0), None, scene_seconds=5.0)
    for tags in scenes.column("tags").to_pylist():
        assert tags == [tag for tag in TAGS if tag in tags]


def test_scene_seconds_must_be_positive():
    with pytest.raises(ValueError, match="scene_seconds"):
        build_scenes("log", drive(5.0), None, scene_seconds=0)


def test_the_path_corridor_follows_the_ego_curve():
    # ego turning left at 0.2 rad/s and 10 m/s: curvature 0.02 /m, the lane 30 m ahead
    # lies 9 m to the left; a pedestrian standing there is in the path, one at y=0 is not
    ego = drive(10.0)
    ego = ego.set_column(
        ego.schema.get_field_index("yaw_rate"), "yaw_rate", pa.array(np.full(ego.num_rows, 0.2))
    )
    on_curve = build_scenes("L", ego, objects(track("p1", "pedestrian", 2, 8, (30, 30), (9, 9))))
    straight_ahead = build_scenes(
        "L", ego, objects(track("p2", "pedestrian", 2, 8, (30, 30), (0, 0)))
    )
    assert "pedestrian_in_path" in rows(on_curve)[0]["tags"]
    assert "pedestrian_in_path" not in rows(straight_ahead)[0]["tags"]
    # a straight drive with a noisy yaw rate keeps the straight corridor
    noisy = drive(10.0)
    jitter = np.random.default_rng(0).normal(0, 0.02, noisy.num_rows)
    noisy = noisy.set_column(noisy.schema.get_field_index("yaw_rate"), "yaw_rate", pa.array(jitter))
    ahead = build_scenes("L", noisy, objects(track("p3", "pedestrian", 2, 8, (45, 45), (0, 0))))
    assert "pedestrian_in_path" in rows(ahead)[0]["tags"]


def test_low_confidence_detections_are_not_counted():
    ghost = track("g", "unknown", 2, 2.1, (20, 20), (0, 0))
    ghost["score"] = [0.35] * len(ghost["t_ns"])
    car = track("c", "car", 2, 8, (20, 20), (3.5, 3.5))
    car["score"] = [0.9] * len(car["t_ns"])
    table = pa.table({k: ghost[k] + car[k] for k in ghost})
    (scene,) = rows(build_scenes("L", drive(10.0), table))
    assert scene["n_other"] == 0 and "unknown_object" not in scene["tags"]
    assert scene["n_cars"] == 1
