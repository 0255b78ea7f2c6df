"""The drive-log generator: real MCAP files read back with the reference ROS 2 decoder."""

from __future__ import annotations

import itertools
import json
import math
import struct
import zlib
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from sim.generate import TOPICS, generate, local_hour

CLASSES = {"car", "truck", "bus", "motorcycle", "pedestrian", "cyclist", "animal", "unknown"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The default demo size: 4 logs of 120 s, seed 0."""
    out = tmp_path_factory.mktemp("demo")
    generate(out)
    return out


@pytest.fixture(scope="module")
def truth(demo) -> dict:
    return json.loads((demo / "truth.json").read_text())


def decoded(path: Path, topic: str, start_ns: int | None = None, end_ns: int | None = None):
    """(log_time, message) of one topic, optionally in [start_ns, end_ns)."""
    with open(path, "rb") as handle:
        reader = make_reader(handle, decoder_factories=[DecoderFactory()])
        for _, _, message, msg in reader.iter_decoded_messages(
            topics=[topic], starting_at=start_ns, ending_before=end_ns
        ):
            yield message.log_time, msg


def stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def ego(path: Path, start_ns: int | None = None, end_ns: int | None = None) -> dict:
    rows = [
        (
            t,
            m.pose.pose.position.x,
            m.pose.pose.position.y,
            2 * math.atan2(m.pose.pose.orientation.z, m.pose.pose.orientation.w),
            m.twist.twist.linear.x,
            m.twist.twist.angular.z,
        )
        for t, m in decoded(path, "/odom", start_ns, end_ns)
    ]
    cols = np.array(rows).T
    return dict(zip(("t", "x", "y", "yaw", "speed", "yaw_rate"), cols, strict=True))


def detections(path: Path, start_ns: int | None = None, end_ns: int | None = None) -> list:
    """(log_time, array frame, detection frame, class, score, track id, x, y, length)."""
    return [
        (
            t,
            m.header.frame_id,
            d.header.frame_id,
            d.results[0].hypothesis.class_id,
            d.results[0].hypothesis.score,
            d.id,
            d.bbox.center.position.x,
            d.bbox.center.position.y,
            d.bbox.size.x,
        )
        for t, m in decoded(path, "/perception/objects", start_ns, end_ns)
        for d in m.detections
    ]


def test_files_and_truth_describe_each_other(demo, truth):
    files = sorted(p.name for p in demo.glob("*.mcap"))
    assert files == [f"drive_{i:04d}.mcap" for i in range(4)]
    assert truth["seed"] == 0 and truth["generator_version"]
    assert [log["file"] for log in truth["logs"]] == files
    for log in truth["logs"]:
        with open(demo / log["file"], "rb") as handle:
            reader = make_reader(handle)
            summary = reader.get_summary()
            counted = Counter(channel.topic for _, channel, _ in reader.iter_messages())
            profile = reader.get_header().profile
        assert log["messages"] == dict(counted)
        assert counted == {"/odom": 1200, "/gnss/fix": 120, "/perception/objects": 1200}
        assert summary.statistics.message_start_time == log["start_ns"]
        assert summary.statistics.message_end_time == log["end_ns"]
        assert 119.8e9 < log["end_ns"] - log["start_ns"] < 120.1e9
        assert profile == "ros2"
        assert {c.message_encoding for c in summary.channels.values()} == {"cdr"}
        types = {c.topic: summary.schemas[c.schema_id].name for c in summary.channels.values()}
        assert types == {t: TOPICS[t] for t in counted}


def test_schemas_embed_their_dependencies_as_ros2_tools_do(demo):
    with open(demo / "drive_0000.mcap", "rb") as handle:
        schemas = {s.name: s for s in make_reader(handle).get_summary().schemas.values()}
    text = schemas["vision_msgs/msg/Detection3DArray"].data.decode()
    assert schemas["vision_msgs/msg/Detection3DArray"].encoding == "ros2msg"
    sections = text.split("\n" + "=" * 80 + "\nMSG: ")
    names = [section.split("\n", 1)[0] for section in sections[1:]]
    assert sorted(names) == sorted(set(names))  # each dependency once
    needed = {"vision_msgs/Detection3D", "vision_msgs/ObjectHypothesisWithPose", "std_msgs/Header",
              "builtin_interfaces/Time", "geometry_msgs/PoseWithCovariance"}  # fmt: skip
    assert needed <= set(names)
    assert "string id" in text and "string class_id" in text
    odom = schemas["nav_msgs/msg/Odometry"].data.decode()
    assert odom.startswith("# This represents an estimate of a position and velocity")
    assert "\nMSG: geometry_msgs/TwistWithCovariance\n" in odom


def test_stamps_are_log_times_at_steady_rates(demo, truth):
    path = demo / "drive_0001.mcap"
    for topic, period, frame in (("/odom", 0.1, "odom"), ("/gnss/fix", 1.0, "gnss_link")):
        rows = list(decoded(path, topic))
        times = np.array([t for t, _ in rows])
        assert all(stamp(m) == t for t, m in rows)
        assert {m.header.frame_id for _, m in rows} == {frame}
        np.testing.assert_allclose(np.diff(times) / 1e9, period, atol=0.002)
    fixes = [m for _, m in decoded(path, "/gnss/fix")]
    assert {f.status.status for f in fixes} == {0}
    lat = np.array([f.latitude for f in fixes])
    lon = np.array([f.longitude for f in fixes])
    assert np.ptp(lat) + np.ptp(lon) > 0.005  # it drove somewhere (~2-3 km on a highway)
    firsts = {
        (round(m.latitude, 1), round(m.longitude, 1))
        for log in truth["logs"]
        for _, m in decoded(
            demo / log["file"], "/gnss/fix", log["start_ns"], log["start_ns"] + 10**9
        )
    }
    assert len(firsts) >= 2  # logs start in different places


def test_odometry_is_kinematically_consistent(demo, truth):
    for log in truth["logs"]:
        e = ego(demo / log["file"])
        dt = np.diff(e["t"]) / 1e9
        travelled = np.hypot(np.diff(e["x"]), np.diff(e["y"])) / dt
        np.testing.assert_allclose(travelled, (e["speed"][1:] + e["speed"][:-1]) / 2, atol=0.35)
        turned = np.diff(np.unwrap(e["yaw"])) / dt
        np.testing.assert_allclose(turned, (e["yaw_rate"][1:] + e["yaw_rate"][:-1]) / 2, atol=0.06)
        lo, hi = (20, 32) if log["regime"] == "highway" else (7, 15)
        assert lo < np.median(e["speed"]) < hi
        assert e["speed"].min() >= 0 and e["speed"].max() < 33


def test_normal_driving_brakes_gently_and_urban_logs_stop(demo, truth):
    for log in truth["logs"]:
        e = ego(demo / log["file"])
        accel = np.gradient(e["speed"], e["t"] / 1e9)
        normal = np.ones(len(e["t"]), bool)
        for ev in truth["events"]:
            if ev["log"] == log["file"]:
                start, end = ev["scenario_start_ns"], ev["scenario_end_ns"]
                normal &= (e["t"] < start - 1e9) | (e["t"] > end + 3e9)
        assert accel[normal].min() > -2.7, log["file"]
        assert accel.max() < 1.6
        if log["regime"] == "urban" and e["t"][-1] - e["t"][0] > 100e9:
            stopped = normal & (e["speed"] < 0.1)
            assert stopped.any(), "a gentle stop (traffic light) in normal urban driving"
            assert accel[normal].min() < -1.1  # a stop brakes at 1.2-2 m/s²


def test_detections_are_in_base_link_with_stable_tracks(demo, truth):
    log = truth["logs"][0]
    rows = detections(demo / log["file"], log["start_ns"], log["start_ns"] + 30 * 10**9)
    assert {r[1] for r in rows} == {"base_link"} and {r[2] for r in rows} == {"base_link"}
    assert {r[3] for r in rows} <= CLASSES
    assert all(0 < r[4] <= 1 for r in rows)
    assert max(math.hypot(r[6], r[7]) for r in rows) < 82
    per_track = defaultdict(list)
    for r in rows:
        per_track[r[5]].append(r)
    long_tracks = [t for t in per_track.values() if len(t) >= 20]
    assert len(long_tracks) >= 10
    for track in long_tracks:
        assert len({r[3] for r in track}) == 1  # one class per id
        lengths = np.array([r[8] for r in track])
        assert lengths.std() < 0.1 * lengths.mean() + 0.05
        times = [r[0] for r in track]
        assert len(set(times)) == len(times)  # one detection per track and frame
    frames = Counter(r[0] for r in rows)
    assert 10 < np.mean(list(frames.values())) < 60
    # Detections hold still in the world where the object does: a parked car's world
    # position (from the ego pose) stays put while the ego drives past it.
    e = ego(demo / log["file"], log["start_ns"], log["start_ns"] + 30 * 10**9)
    pose = {
        int(t): (x, y, yaw) for t, x, y, yaw in zip(e["t"], e["x"], e["y"], e["yaw"], strict=True)
    }
    spreads = []
    for track in long_tracks:
        world = []
        for r in track:
            x, y, yaw = pose[min(pose, key=lambda t, r=r: abs(t - r[0]))]
            world.append((x + r[6] * math.cos(yaw) - r[7] * math.sin(yaw),
                          y + r[6] * math.sin(yaw) + r[7] * math.cos(yaw)))  # fmt: skip
        spreads.append(np.ptp(np.array(world), axis=0).max())
    assert min(spreads) < 1.5  # at least one stationary object (parked car)


def off_path(e: dict, rows: list) -> np.ndarray:
    """Lateral distance of each detection from the path the ego drives (road curves included)."""
    out = []
    for r in rows:
        i = int(np.argmin(np.abs(e["t"] - r[0])))
        c, s = math.cos(e["yaw"][i]), math.sin(e["yaw"][i])
        px, py = e["x"][i] + r[6] * c - r[7] * s, e["y"][i] + r[6] * s + r[7] * c
        j = int(np.argmin(np.hypot(e["x"] - px, e["y"] - py)))
        k = min(j + 1, len(e["x"]) - 1) if j + 1 < len(e["x"]) else j - 1
        dx, dy = e["x"][k] - e["x"][j], e["y"][k] - e["y"][j]
        norm = math.hypot(dx, dy) or 1.0
        out.append(abs(dx * (py - e["y"][j]) - dy * (px - e["x"][j])) / norm)
    return np.array(out)


def by_kind(truth) -> Counter:
    return Counter(e["kind"] for e in truth["events"])


def test_default_size_has_every_kind_and_times_across_the_day(truth):
    kinds = by_kind(truth)
    for kind in ("hard_brake", "pedestrian_crossing", "cut_in"):
        assert kinds[kind] >= 2, kinds
    for kind in ("animal", "unknown_object"):
        assert kinds[kind] >= 1, kinds
    assert set(kinds) <= {"hard_brake", "pedestrian_crossing", "cut_in", "animal", "unknown_object"}
    starts = [datetime.fromtimestamp(log["start_ns"] / 1e9, UTC) for log in truth["logs"]]
    assert {s.year for s in starts} == {2026}
    hours = [local_hour(log["start_ns"], log["origin"]["lon"]) for log in truth["logs"]]
    assert any(h >= 21 or h < 5 for h in hours), hours  # a night drive, in local solar time
    assert any(8 <= h < 18 for h in hours), hours  # a day drive
    assert {log["regime"] for log in truth["logs"]} == {"urban", "highway"}


def test_events_do_not_overlap_and_lie_inside_their_logs(truth):
    logs = {log["file"]: log for log in truth["logs"]}
    for name, log in logs.items():
        events = sorted(
            (e for e in truth["events"] if e["log"] == name), key=lambda e: e["start_ns"]
        )
        for e in events:
            # the observable window (what a trigger finds) and the scenario around it
            assert log["start_ns"] <= e["start_ns"] < e["end_ns"] <= log["end_ns"]
            assert 0.2e9 <= e["end_ns"] - e["start_ns"] <= 12e9
            start, end = e["scenario_start_ns"], e["scenario_end_ns"]
            assert log["start_ns"] <= start < end <= log["end_ns"]
            assert 2e9 <= end - start <= 12e9
            assert e["track_id"]
        for a, b in itertools.pairwise(events):
            assert b["scenario_start_ns"] - a["scenario_end_ns"] > 10e9  # normal driving between


def test_planted_events_are_physically_there(demo, truth):
    for event in truth["events"]:
        path = demo / event["log"]
        start, end = event["scenario_start_ns"], event["scenario_end_ns"]
        e = ego(path, start - 10**9, end + 10**9)
        drive = ego(path, start - 10**9, end + 20 * 10**9)  # the path ahead, to find the lane
        accel = np.gradient(e["speed"], e["t"] / 1e9)
        track = [r for r in detections(path, start - 2 * 10**9, end) if r[5] == event["track_id"]]
        assert track, event
        kind, classes = event["kind"], {r[3] for r in track}
        ahead = [r for r in track if r[6] > 0]
        if kind == "hard_brake":
            assert accel.min() < -5.0, event
            assert classes <= {"car", "truck", "bus", "motorcycle"}
            assert all(abs(r[7]) < 2.5 and 5 < r[6] < 60 for r in track)  # the lead, in lane
        elif kind == "pedestrian_crossing":
            assert classes == {"pedestrian"}
            in_lane = off_path(drive, ahead) < 1.5
            assert (
                in_lane.any() and min(r[6] for r, x in zip(ahead, in_lane, strict=True) if x) > 2.5
            )
            assert e["speed"].min() < e["speed"][0] - 3 and accel.min() > -5.0
        elif kind == "cut_in":
            assert classes <= {"car", "truck", "bus", "motorcycle"}
            # From the adjacent lane (3.5 m over; the road may curve) into the ego lane.
            assert abs(track[0][7] - track[-1][7]) > 2.5 and abs(track[-1][7]) < 1.0, event
            merged = [r for r in track if abs(r[7]) < 1.0]
            assert all(3 < r[6] < 30 for r in merged), event
            assert accel.min() < -1.5
        elif kind == "animal":
            assert classes == {"animal"}
            assert (off_path(drive, ahead) < 1.8).any(), event
            assert e["speed"].min() < e["speed"][0] - 2
        elif kind == "unknown_object":
            assert classes == {"unknown"}
            assert accel.min() < -2.0  # brakes, and swerves round it: passes it 2-3.5 m aside
            beside = [abs(r[7]) for r in track if abs(r[6]) < 3]
            assert beside and 1.8 < min(beside) < 3.5, event


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        generate(tmp_path / name, logs=2, seconds=30.0, seed=seed)
        runs[name] = {p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())}
    assert set(runs["a"]) == {"drive_0000.mcap", "drive_0001.mcap", "truth.json"}
    assert runs["a"] == runs["b"]
    assert all(runs["a"][name] != runs["c"][name] for name in runs["a"])


def test_camera_frames_are_small_pngs_at_1_hz(tmp_path):
    (path,) = generate(tmp_path, logs=1, seconds=5.0, seed=2, camera=True)
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["logs"][0]["messages"]["/camera/front/compressed"] == 5
    images = list(decoded(path, "/camera/front/compressed"))
    assert np.allclose(np.diff([t for t, _ in images]) / 1e9, 1.0, atol=0.002)
    for _, image in images:
        data = bytes(image.data)
        assert image.format == "png" and data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert (width, height) == (160, 90)
        idat = data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8]
        assert len(zlib.decompress(idat)) == height * (1 + 3 * width)


def test_rejects_an_unknown_compression(tmp_path):
    with pytest.raises(ValueError, match="compression"):
        generate(tmp_path, logs=1, seconds=1.0, compression="bz2")
