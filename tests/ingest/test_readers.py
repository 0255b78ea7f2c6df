"""read_log on real recorded logs and on small logs written here in every supported encoding."""

from __future__ import annotations

import json
import math
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from mcap.writer import CompressionType
from mcap.writer import Writer as McapWriter
from mcap_ros2.writer import Writer as Ros2Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from flywheel.errors import InputError
from ingest.readers import KINDS, read_log

REAL_LOGS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real-logs"
T0 = 1_700_000_000_000_000_000  # ns
real = pytest.mark.skipif(not REAL_LOGS.is_dir(), reason="shared/data/real-logs missing")

VISION_MSGS = """\
std_msgs/Header header
Detection3D[] detections
================================================================================
MSG: vision_msgs/Detection3D
std_msgs/Header header
ObjectHypothesisWithPose[] results
BoundingBox3D bbox
string id
================================================================================
MSG: vision_msgs/ObjectHypothesisWithPose
ObjectHypothesis hypothesis
geometry_msgs/PoseWithCovariance pose
================================================================================
MSG: vision_msgs/ObjectHypothesis
string class_id
float64 score
================================================================================
MSG: vision_msgs/BoundingBox3D
geometry_msgs/Pose center
geometry_msgs/Vector3 size
================================================================================
MSG: geometry_msgs/PoseWithCovariance
geometry_msgs/Pose pose
float64[36] covariance
================================================================================
MSG: geometry_msgs/Pose
geometry_msgs/Point position
geometry_msgs/Quaternion orientation
================================================================================
MSG: geometry_msgs/Point
float64 x
float64 y
float64 z
================================================================================
MSG: geometry_msgs/Quaternion
float64 x
float64 y
float64 z
float64 w
================================================================================
MSG: geometry_msgs/Vector3
float64 x
float64 y
float64 z
================================================================================
MSG: std_msgs/Header
builtin_interfaces/Time stamp
string frame_id
================================================================================
MSG: builtin_interfaces/Time
int32 sec
uint32 nanosec
"""


def ros2_msgdef(msgtype: str) -> str:
    return get_typestore(Stores.ROS2_HUMBLE).generate_msgdef(msgtype, ros_version=2)[0]


def stamp(t_ns: int) -> dict:
    return {"sec": t_ns // 1_000_000_000, "nanosec": t_ns % 1_000_000_000}


def quat(yaw: float) -> dict:
    return {"x": 0.0, "y": 0.0, "z": math.sin(yaw / 2), "w": math.cos(yaw / 2)}


def odometry(t_ns: int, x: float, y: float, yaw: float, speed: float, frame="odom") -> dict:
    return {
        "header": {"stamp": stamp(t_ns), "frame_id": frame},
        "child_frame_id": "base_link",
        "pose": {
            "pose": {"position": {"x": x, "y": y, "z": 0.0}, "orientation": quat(yaw)},
            "covariance": [0.0] * 36,
        },
        "twist": {
            "twist": {
                "linear": {"x": speed, "y": 0.0, "z": 0.0},
                "angular": {"x": 0.0, "y": 0.0, "z": 0.1},
            },
            "covariance": [0.0] * 36,
        },
    }


def navsatfix(t_ns: int, frame="/gps") -> dict:
    return {
        "header": {"stamp": stamp(t_ns), "frame_id": frame},
        "status": {"status": 0, "service": 1},
        "latitude": 42.0,
        "longitude": -71.0,
        "altitude": 12.5,
        "position_covariance": [0.0] * 9,
        "position_covariance_type": 0,
    }


def detection(cls: str, track: str, x: float, y: float, score=0.9) -> dict:
    pose = {"position": {"x": x, "y": y, "z": 0.0}, "orientation": quat(0.0)}
    return {
        "header": {"stamp": stamp(0), "frame_id": ""},
        "results": [
            {
                "hypothesis": {"class_id": cls, "score": score},
                "pose": {"pose": pose, "covariance": [0.0] * 36},
            }
        ],
        "bbox": {"center": pose, "size": {"x": 4.5, "y": 1.8, "z": 1.5}},
        "id": track,
    }


def write_ros2_mcap(path, n=50, frame="odom", skew_ns=0, compression=CompressionType.ZSTD):
    """10 Hz: ego at (10, 0) heading +y (yaw 90 deg), a car at world (10, 5), a fix."""
    with open(path, "wb") as f:
        writer = Ros2Writer(f, compression=compression)
        odom = writer.register_msgdef("nav_msgs/msg/Odometry", ros2_msgdef("nav_msgs/msg/Odometry"))
        fix = writer.register_msgdef(
            "sensor_msgs/msg/NavSatFix", ros2_msgdef("sensor_msgs/msg/NavSatFix")
        )
        dets = writer.register_msgdef("vision_msgs/msg/Detection3DArray", VISION_MSGS)
        for i in range(n):
            t = T0 + i * 100_000_000
            writer.write_message(
                "/odom", odom, odometry(t - skew_ns, 10.0, 0.0, math.pi / 2, 2.0), t, t
            )
            writer.write_message("/gps/fix", fix, navsatfix(t - skew_ns), t, t)
            array = {
                "header": {"stamp": stamp(t - skew_ns), "frame_id": frame},
                "detections": [detection("Car", "7", 10.0, 5.0), detection("deer", "8", 3, 4)],
            }
            writer.write_message("/objects", dets, array, t, t)
        writer.finish()
    return path


def test_ros2_cdr_mcap_gives_every_table_with_objects_in_the_ego_frame(tmp_path):
    log = read_log(write_ros2_mcap(tmp_path / "drive.mcap"))
    assert (log.format, log.message_count) == ("mcap", 150)
    assert (log.start_ns, log.end_ns) == (T0, T0 + 49 * 100_000_000)
    assert {t.topic: (t.kind, t.count) for t in log.topics} == {
        "/odom": ("ego", 50),
        "/gps/fix": ("gnss", 50),
        "/objects": ("objects", 50),
    }
    ego = log.ego.to_pydict()
    assert ego["t_ns"][:2] == [T0, T0 + 100_000_000]
    assert ego["yaw"][0] == pytest.approx(math.pi / 2)
    assert ego["speed"][0] == pytest.approx(2.0) and ego["yaw_rate"][0] == pytest.approx(0.1)
    assert ego["accel"][0] == pytest.approx(0.0)
    assert log.gnss.num_rows == 50 and log.gnss["lat"][0].as_py() == 42.0
    objects = log.objects.to_pylist()
    assert len(objects) == 100
    car, deer = objects[0], objects[1]
    # ego at (10, 0) heading +y: the car 5 m further along +y is 5 m straight ahead
    assert (car["x"], car["y"], car["distance"]) == pytest.approx((5.0, 0.0, 5.0))
    assert (car["category"], car["track_id"], car["score"]) == ("car", "7", 0.9)
    assert (car["length"], car["width"], car["height"]) == (4.5, 1.8, 1.5)
    # deer at world (3, 4): 4 m ahead, 7 m to the left
    assert deer["category"] == "deer" and (deer["x"], deer["y"]) == pytest.approx((4.0, 7.0))
    assert car["frame_id"] == "odom"
    assert log.warnings == [] and log.truncated is None


def test_objects_already_in_the_ego_frame_are_left_as_they_are(tmp_path):
    log = read_log(write_ros2_mcap(tmp_path / "drive.mcap", n=3, frame="base_link"))
    car = log.objects.to_pylist()[0]
    assert (car["x"], car["y"]) == (10.0, 5.0)


def test_skewed_header_stamps_fall_back_to_log_time_with_a_warning(tmp_path):
    day = 86_400 * 1_000_000_000
    log = read_log(write_ros2_mcap(tmp_path / "drive.mcap", n=5, skew_ns=15 * day))
    assert log.ego["t_ns"].to_pylist() == log.ego["log_time_ns"].to_pylist()
    assert log.ego["stamp_ns"][0].as_py() == T0 - 15 * day
    assert log.objects["t_ns"][0].as_py() == T0
    assert any("/odom" in w and "log (receive) time" in w for w in log.warnings)


def test_topic_map_overrides_recognition_by_type(tmp_path):
    path = write_ros2_mcap(tmp_path / "drive.mcap", n=5)
    log = read_log(path, topic_map={"/gps/fix": "ignore", "objects": "ignore"})
    assert log.gnss is None and log.objects is None and log.ego.num_rows == 5
    kinds = {t.topic: t.kind for t in log.topics}
    assert kinds == {"/odom": "ego", "/gps/fix": "ignore", "/objects": "ignore"}
    assert log.message_count == 15  # ignored topics are still counted
    with pytest.raises(InputError, match="unknown kind 'lidar'"):
        read_log(path, topic_map={"/odom": "lidar"})
    assert "ignore" in KINDS


def write_json_mcap(path, msgtype="nav_msgs/msg/Odometry", n=10):
    with open(path, "wb") as f:
        writer = McapWriter(f)
        writer.start()
        odom = writer.register_schema(msgtype, "jsonschema", b'{"type": "object"}')
        fix = writer.register_schema("my_msgs/msg/Fix", "jsonschema", b'{"type": "object"}')
        odom_ch = writer.register_channel("/state", "json", odom)
        fix_ch = writer.register_channel("/my/fix", "json", fix)
        for i in range(n):
            t = T0 + i * 100_000_000
            msg = odometry(t, 2.0 * i * 0.1, 0.0, 0.0, 2.0)
            writer.add_message(odom_ch, t, json.dumps(msg).encode(), t)
            writer.add_message(fix_ch, t, json.dumps(navsatfix(t)).encode(), t)
        writer.finish()
    return path


def test_json_mcap_and_an_unknown_type_mapped_to_a_kind(tmp_path):
    path = write_json_mcap(tmp_path / "drive.mcap")
    log = read_log(path)
    assert log.ego.num_rows == 10 and log.gnss is None
    assert log.ego["x"].to_pylist()[:2] == [0.0, 0.2]
    assert {t.topic: t.kind for t in log.topics} == {"/state": "ego", "/my/fix": None}
    log = read_log(path, topic_map={"/my/fix": "gnss"})
    assert log.gnss["lat"].to_pylist() == [42.0] * 10
    assert log.gnss["alt"][0].as_py() == 12.5


def test_pose_stamped_in_json_gets_speed_and_yaw_rate_from_successive_poses(tmp_path):
    path = tmp_path / "flight.mcap"
    with open(path, "wb") as f:
        writer = McapWriter(f)
        writer.start()
        schema = writer.register_schema("geometry_msgs/PoseStamped", "jsonschema", b"{}")
        channel = writer.register_channel("/pose", "json", schema)
        for i in range(200):  # 100 Hz, a 10 m radius circle at 5 m/s, climbing at 1 m/s
            t = T0 + i * 10_000_000
            angle = 0.5 * i * 0.01
            msg = {
                "header": {"stamp": stamp(t), "frame_id": "qualisys"},
                "pose": {
                    "position": {
                        "x": 10 * math.cos(angle),
                        "y": 10 * math.sin(angle),
                        "z": i / 100,
                    },
                    "orientation": quat(angle + math.pi / 2),
                },
            }
            writer.add_message(channel, t, json.dumps(msg).encode(), t)
        writer.finish()
    ego = read_log(path).ego
    speed, yaw_rate = ego["speed"].to_numpy(), ego["yaw_rate"].to_numpy()
    assert speed[50:150] == pytest.approx(math.hypot(5.0, 1.0), rel=1e-3)
    assert yaw_rate[50:150] == pytest.approx(0.5, rel=1e-3)
    assert np.all(np.abs(ego["accel"].to_numpy()[50:150]) < 0.05)


def ros1_store():
    return get_typestore(Stores.ROS1_NOETIC)


def ros1_odometry(store, t_ns: int, x: float, speed: float):
    T = store.types
    time = T["builtin_interfaces/msg/Time"](sec=t_ns // 10**9, nanosec=t_ns % 10**9)
    vec = T["geometry_msgs/msg/Vector3"]
    return T["nav_msgs/msg/Odometry"](
        header=T["std_msgs/msg/Header"](seq=1, stamp=time, frame_id="odom"),
        child_frame_id="base_link",
        pose=T["geometry_msgs/msg/PoseWithCovariance"](
            pose=T["geometry_msgs/msg/Pose"](
                position=T["geometry_msgs/msg/Point"](x=x, y=1.0, z=0.0),
                orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
            ),
            covariance=np.zeros(36),
        ),
        twist=T["geometry_msgs/msg/TwistWithCovariance"](
            twist=T["geometry_msgs/msg/Twist"](
                linear=vec(x=speed, y=0.0, z=0.0), angular=vec(x=0.0, y=0.0, z=-0.2)
            ),
            covariance=np.zeros(36),
        ),
    )


def test_ros1_encoded_mcap(tmp_path):
    store = ros1_store()
    path = tmp_path / "ros1.mcap"
    with open(path, "wb") as f:
        writer = McapWriter(f)
        writer.start(profile="ros1")
        text = store.generate_msgdef("nav_msgs/msg/Odometry")[0]
        schema = writer.register_schema("nav_msgs/Odometry", "ros1msg", text.encode())
        channel = writer.register_channel("/odom", "ros1", schema)
        for i in range(20):
            t = T0 + i * 50_000_000
            data = store.serialize_ros1(
                ros1_odometry(store, t, 0.1 * i, 2.0), "nav_msgs/msg/Odometry"
            )
            writer.add_message(channel, t, data, t)
        writer.finish()
    log = read_log(path)
    assert log.topics[0].msgtype == "nav_msgs/msg/Odometry"
    ego = log.ego.to_pydict()
    assert ego["t_ns"] == [T0 + i * 50_000_000 for i in range(20)]
    assert ego["x"][3] == pytest.approx(0.3) and ego["y"][3] == 1.0
    assert ego["speed"][0] == 2.0 and ego["yaw_rate"][0] == -0.2 and ego["yaw"][0] == 0.0


def write_ros1_bag(path, n=400):
    from rosbags.rosbag1 import Writer

    store = ros1_store()
    writer = Writer(path)
    writer.set_compression(Writer.CompressionFormat.BZ2)
    writer.chunk_threshold = 4096  # several chunks, so a cut leaves whole ones before it
    with writer:
        conn = writer.add_connection("/odom", "nav_msgs/msg/Odometry", typestore=store)
        for i in range(n):
            t = T0 + i * 100_000_000
            msg = ros1_odometry(store, t, 0.1 * i, 1.0)
            writer.write(conn, t, store.serialize_ros1(msg, "nav_msgs/msg/Odometry"))
    return path


def test_ros1_bag_and_its_salvage_when_cut_in_half(tmp_path):
    path = write_ros1_bag(tmp_path / "run.bag")
    log = read_log(path)
    assert (log.format, log.message_count, log.ego.num_rows) == ("ros1bag", 400, 400)
    data = path.read_bytes()
    cut = tmp_path / "cut.bag"
    cut.write_bytes(data[: len(data) // 2])
    log = read_log(cut)
    assert 50 < log.message_count < 400
    assert log.ego.num_rows == log.message_count
    assert log.ego["x"].to_pylist() == pytest.approx([0.1 * i for i in range(log.message_count)])
    assert not log.complete and log.expected_messages is None  # the index was cut off
    assert (
        f"{log.message_count:,} messages landed" in log.truncated and "cut short" in log.truncated
    )


@pytest.mark.parametrize(
    "compression", [CompressionType.ZSTD, CompressionType.LZ4, CompressionType.NONE]
)
def test_mcap_cut_short_salvages_the_messages_before_the_cut(tmp_path, compression):
    path = write_ros2_mcap(tmp_path / "drive.mcap", n=200, compression=compression)
    data = path.read_bytes()
    cut = tmp_path / "cut.mcap"
    # a quarter of the file ends inside the one chunk; half of it ends in the index after it
    cut.write_bytes(data[: len(data) // 4])
    log = read_log(cut)
    assert 0 < log.message_count < 600 and not log.complete
    assert f"{log.message_count:,} messages landed" in log.truncated
    counts = {t.topic: t.count for t in log.topics}
    assert log.ego.num_rows == counts["/odom"] and log.gnss.num_rows == counts["/gps/fix"]
    assert log.ego["t_ns"].to_pylist() == [T0 + i * 100_000_000 for i in range(counts["/odom"])]
    quarter = log.message_count
    cut.write_bytes(data[: len(data) // 2])
    log = read_log(cut)
    assert quarter < log.message_count <= 600 and not log.complete
    if compression != CompressionType.NONE:  # compressed: the whole chunk fits in the first half
        assert log.message_count == 600 and "600 messages landed" in log.truncated


def test_an_mcap_cut_before_any_message_is_an_input_error(tmp_path):
    data = write_ros2_mcap(tmp_path / "drive.mcap", n=5).read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[:40])
    with pytest.raises(InputError, match="nothing could be salvaged"):
        read_log(cut)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"speed,accel\n1,2\n", "not a log .*text"),
        (os.urandom(64).replace(b"\x89", b"\x00"), "not a log"),
        (b"#ROSBAG V1.2\n", "not supported"),
    ],
)
def test_what_is_not_a_log_is_an_input_error_naming_the_file(tmp_path, content, expected):
    path = tmp_path / "drive.mcap"
    path.write_bytes(content)
    with pytest.raises(InputError, match=expected) as error:
        read_log(path)
    assert str(path) in str(error.value)


def test_a_sqlite_file_that_is_not_a_bag_or_is_damaged_is_an_input_error(tmp_path):
    path = tmp_path / "other.db3"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(InputError, match="not a ROS 2 bag"):
        read_log(path)
    with pytest.raises(InputError, match="rosbag2 folder"):
        read_log(tmp_path)


def write_rosbag2(folder, n=30):
    from rosbags.rosbag2 import Writer

    store = get_typestore(Stores.ROS2_HUMBLE)
    T = store.types
    with Writer(folder, version=8) as writer:
        conn = writer.add_connection("/fix", "sensor_msgs/msg/NavSatFix", typestore=store)
        for i in range(n):
            t = T0 + i * 10**9
            msg = T["sensor_msgs/msg/NavSatFix"](
                header=T["std_msgs/msg/Header"](
                    stamp=T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=0),
                    frame_id="gps",
                ),
                status=T["sensor_msgs/msg/NavSatStatus"](status=0, service=1),
                latitude=48.0 + i * 1e-5,
                longitude=11.0,
                altitude=500.0,
                position_covariance=np.zeros(9),
                position_covariance_type=0,
            )
            writer.write(conn, t, store.serialize_cdr(msg, "sensor_msgs/msg/NavSatFix"))
    return folder


def test_rosbag2_folder_and_its_bare_db3(tmp_path):
    folder = write_rosbag2(tmp_path / "bag")
    for path in (folder, next(folder.glob("*.db3"))):
        log = read_log(path)
        assert (log.format, log.message_count, log.gnss.num_rows) == ("rosbag2", 30, 30)
        assert log.gnss["lat"][29].as_py() == pytest.approx(48.00029)
        assert log.start_ns == T0 and log.end_ns == T0 + 29 * 10**9


def test_a_truncated_db3_keeps_the_rows_before_the_cut(tmp_path):
    db3 = next(write_rosbag2(tmp_path / "bag", n=3000).glob("*.db3"))
    data = db3.read_bytes()
    cut = tmp_path / "cut.db3"
    cut.write_bytes(data[: len(data) // 2])
    log = read_log(cut)
    assert 0 < log.message_count < 3000 and not log.complete
    assert log.gnss["lat"].to_pylist() == pytest.approx(
        [48.0 + i * 1e-5 for i in range(log.message_count)]
    )
    assert "cut short" in log.truncated


def test_a_custom_type_without_definition_is_counted_not_decoded(tmp_path):
    # the shape of the radar file: a standard-looking bag whose one type nobody can decode
    path = tmp_path / "custom.db3"
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT, type TEXT, "
        "serialization_format TEXT, offered_qos_profiles TEXT)"
    )
    con.execute(
        "CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER, "
        "timestamp INTEGER, data BLOB)"
    )
    con.execute("INSERT INTO topics VALUES (1, '/radar', 'acme_msgs/msg/Blob', 'cdr', '')")
    con.execute("INSERT INTO topics VALUES (2, '/gps', 'acme_msgs/msg/Fix', 'cdr', '')")
    con.executemany(
        "INSERT INTO messages VALUES (?, ?, ?, ?)",
        [(i, 1 + i % 2, T0 + i, b"\x00\x01\x00\x00") for i in range(1, 7)],
    )
    con.commit()
    con.close()
    log = read_log(path, topic_map={"/gps": "gnss"})
    assert log.message_count == 6 and log.gnss is None and log.ego is None
    assert {t.topic: (t.kind, t.count) for t in log.topics} == {
        "/radar": (None, 3),
        "/gps": (None, 3),
    }
    assert any("/gps" in w and "not decoded" in w for w in log.warnings)


def test_a_definition_embedded_in_the_file_decodes_an_unknown_type(tmp_path):
    # a custom Odometry-like type mapped to ego, known only from the MCAP's schema record
    text = (
        "std_msgs/Header header\ngeometry_msgs/Pose pose\nfloat64 battery\n"
        + (VISION_MSGS[VISION_MSGS.index("=" * 80 + "\nMSG: geometry_msgs/Pose") :])
    )
    store = get_typestore(Stores.ROS2_HUMBLE)
    store.register(get_types_from_msg(text, "acme_msgs/msg/State"))
    path = tmp_path / "acme.mcap"
    with open(path, "wb") as f:
        writer = Ros2Writer(f)
        schema = writer.register_msgdef("acme_msgs/msg/State", text)
        for i in range(5):
            t = T0 + i * 10**8
            msg = {
                "header": {"stamp": stamp(t), "frame_id": "map"},
                "pose": {"position": {"x": i, "y": 0.0, "z": 0.0}, "orientation": quat(0.3)},
                "battery": 0.5,
            }
            writer.write_message("/state", schema, msg, t, t)
        writer.finish()
    assert read_log(path).ego is None
    ego = read_log(path, topic_map={"/state": "ego"}).ego
    assert ego["x"].to_pylist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert ego["yaw"][0].as_py() == pytest.approx(0.3)
    assert ego["speed"][2].as_py() == pytest.approx(10.0)


@real
def test_real_ros1_bag_husky():
    log = read_log(REAL_LOGS / "robot_localization_test1_husky.bag")
    assert (log.format, log.message_count) == ("ros1bag", 16806)
    counts = {t.topic: (t.msgtype, t.count, t.kind) for t in log.topics}
    assert counts["/fix"] == ("sensor_msgs/msg/NavSatFix", 989, "gnss")
    assert (log.ego.num_rows, log.imu.num_rows, log.gnss.num_rows) == (3952, 11865, 989)
    assert 42.37 < float(np.mean(log.gnss["lat"].to_numpy())) < 42.38
    assert abs(log.start_ns / 1e9 - 1432235498.025) < 0.01
    assert abs(log.end_ns / 1e9 - 1432235893.332) < 0.01
    speed = log.ego["speed"].to_numpy()
    assert 0 < speed.max() < 5 and log.warnings == [] and log.truncated is None


@real
def test_real_ros2_mcap_flight_with_pose_stamped():
    log = read_log(REAL_LOGS / "cubs2_cub_stabilize_2025_11_13.mcap")
    assert (log.format, log.message_count) == ("mcap", 21258)
    assert {t.topic: (t.count, t.kind) for t in log.topics} == {
        "/cub1/pose": (19703, "ego"),
        "/cub1/joy_serial_status": (1555, None),
    }
    assert log.start_ns == 1763073169920749554 and log.end_ns == 1763073367948815667
    ego = log.ego
    assert ego.num_rows == 19703 and set(ego["frame_id"].to_pylist()) == {"qualisys"}
    speed = ego["speed"].to_numpy()
    assert np.all(np.isfinite(speed)) and 1 < speed.mean() < speed.max() < 30
    assert np.all(np.isfinite(ego["accel"].to_numpy()))
    assert np.all(np.diff(ego["t_ns"].to_numpy()) >= 0)


@real
def test_real_ros2_db3_radar_with_a_custom_type():
    log = read_log(REAL_LOGS / "nebula_ars548_radar_1708578204.db3")
    assert (log.format, log.message_count) == ("rosbag2", 2)
    (topic,) = log.topics
    assert (topic.msgtype, topic.count, topic.kind) == ("nebula_msgs/msg/NebulaPackets", 2, None)
    assert [log.ego, log.gnss, log.imu, log.objects, log.camera] == [None] * 5
    assert log.start_ns == 1709877048960694335 and log.end_ns == 1709877048998351210


@pytest.mark.parametrize("storage", ["SQLITE3", "MCAP"])
@pytest.mark.parametrize("mode", ["NONE", "FILE", "MESSAGE"])
def test_rosbag2_folders_of_every_storage_and_compression(tmp_path, storage, mode):
    from rosbags.rosbag2 import Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin

    store = get_typestore(Stores.ROS2_HUMBLE)
    folder = tmp_path / "bag"
    writer = Writer(folder, version=8, storage_plugin=StoragePlugin[storage])
    if mode != "NONE":
        writer.set_compression(CompressionMode[mode], CompressionFormat.ZSTD)
    with writer:
        conn = writer.add_connection("/odom", "nav_msgs/msg/Odometry", typestore=store)
        for i in range(30):
            t = T0 + i * 10**8
            msg = store.types["nav_msgs/msg/Odometry"]
            data = store.serialize_cdr(_odometry_message(store, msg, t, i), "nav_msgs/msg/Odometry")
            writer.write(conn, t, data)
    before = sorted(p.name for p in folder.iterdir())
    log = read_log(folder)
    assert (log.message_count, log.complete, log.expected_messages) == (30, True, 30)
    assert log.ego["x"].to_pylist() == pytest.approx([0.1 * i for i in range(30)])
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written beside it


def _odometry_message(store, cls, t: int, i: int):
    T = store.types
    header = T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9), frame_id="odom"
    )
    pose = T["geometry_msgs/msg/Pose"](
        position=T["geometry_msgs/msg/Point"](x=0.1 * i, y=0.0, z=0.0),
        orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
    )
    vector = T["geometry_msgs/msg/Vector3"]
    twist = T["geometry_msgs/msg/Twist"](
        linear=vector(x=1.0, y=0.0, z=0.0), angular=vector(x=0.0, y=0.0, z=0.0)
    )
    return cls(
        header=header,
        child_frame_id="base_link",
        pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36)),
        twist=T["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=np.zeros(36)),
    )


@pytest.mark.parametrize("compression", ["NONE", "BZ2", "LZ4"])
def test_ros1_bags_of_every_chunk_compression(tmp_path, compression):
    from rosbags.rosbag1 import Writer

    store = ros1_store()
    path = tmp_path / "run.bag"
    writer = Writer(path)
    if compression != "NONE":
        writer.set_compression(Writer.CompressionFormat[compression])
    writer.chunk_threshold = 4096
    with writer:
        conn = writer.add_connection("/odom", "nav_msgs/msg/Odometry", typestore=store)
        for i in range(200):
            t = T0 + i * 10**8
            writer.write(
                conn,
                t,
                store.serialize_ros1(
                    ros1_odometry(store, t, 0.1 * i, 1.0), "nav_msgs/msg/Odometry"
                ),
            )
    log = read_log(path)
    assert (log.message_count, log.complete, log.expected_messages) == (200, True, 200)
    assert log.ego["x"].to_pylist() == pytest.approx([0.1 * i for i in range(200)])
