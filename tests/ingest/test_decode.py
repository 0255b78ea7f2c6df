"""Bulk decoding against the reference decoders (mcap-ros2-support for CDR, rosbags for ROS 1).

Messages are serialized by independent writers (mcap_ros2's Writer into a real MCAP file,
rosbags for big-endian CDR and ROS 1), with frame ids of odd, varying lengths inside one batch
so that alignment after strings is exercised, and compared column by column.
"""

from __future__ import annotations

import pickle
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap.records import Schema
from mcap_ros2.decoder import DecoderFactory
from mcap_ros2.writer import Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.base import Nodetype

from flywheel.errors import InputError
from ingest.decode import DecodeError, bulk_decoder, schema_text

REAL_LOGS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real-logs"
TYPES = [
    "nav_msgs/msg/Odometry",
    "geometry_msgs/msg/PoseStamped",
    "sensor_msgs/msg/NavSatFix",
    "sensor_msgs/msg/Imu",
    "vision_msgs/msg/Detection3DArray",
]
ROS1_TYPES = TYPES[:4]
DETECTIONS = "vision_msgs/msg/Detection3DArray"
COLUMNS = {  # exactly the raw columns of docs/interfaces
    "nav_msgs/msg/Odometry": "stamp_ns frame_id child_frame_id px py pz qx qy qz qw "
    "vx vy vz wx wy wz",
    "geometry_msgs/msg/PoseStamped": "stamp_ns frame_id px py pz qx qy qz qw",
    "sensor_msgs/msg/NavSatFix": "stamp_ns frame_id status lat lon alt",
    "sensor_msgs/msg/Imu": "stamp_ns frame_id qx qy qz qw wx wy wz ax ay az",
    DETECTIONS: "msg_index stamp_ns frame_id class_id score track_id cx cy cz qx qy qz qw sx sy sz",
}
# Odd and even lengths, empty included: every string length shifts what follows differently.
FRAMES = ["", "a", "ab", "odom", "map", "base_link", "/gps", "camera_front_left", "x" * 13]
CLASSES = ["car", "truck", "bus", "pedestrian", "cyclist", "animal", "unknown", ""]


# --- messages as plain dicts, with every field set (covariances too, so skips are exercised) ---
def _vec(rng, n: int) -> list[float]:
    return (rng.normal(size=n) * 100).tolist()


def _xyz(rng) -> dict:
    return dict(zip("xyz", _vec(rng, 3), strict=True))


def _quat(rng) -> dict:
    return dict(zip("xyzw", _vec(rng, 4), strict=True))


def _header(rng) -> dict:
    sec = int(rng.integers(-3, 2**31 - 1)) if rng.random() < 0.9 else 0
    return {
        "stamp": {"sec": sec, "nanosec": int(rng.integers(0, 10**9))},
        "frame_id": str(rng.choice(FRAMES)),
    }


def _pose(rng) -> dict:
    return {"position": _xyz(rng), "orientation": _quat(rng)}


def _detection(rng) -> dict:
    results = [
        {
            "hypothesis": {"class_id": str(rng.choice(CLASSES)), "score": float(rng.random())},
            "pose": {"pose": _pose(rng), "covariance": _vec(rng, 36)},
        }
        for _ in range(int(rng.choice([0, 1, 1, 1, 2, 3])))
    ]
    track = "" if rng.random() < 0.1 else str(int(rng.integers(0, 10 ** int(rng.integers(1, 6)))))
    return {
        "header": _header(rng),
        "results": results,
        "bbox": {"center": _pose(rng), "size": _xyz(rng)},
        "id": track,
    }


def make_message(msgtype: str, rng) -> dict:
    if msgtype == "nav_msgs/msg/Odometry":
        return {
            "header": _header(rng),
            "child_frame_id": str(rng.choice(FRAMES)),
            "pose": {"pose": _pose(rng), "covariance": _vec(rng, 36)},
            "twist": {
                "twist": {"linear": _xyz(rng), "angular": _xyz(rng)},
                "covariance": _vec(rng, 36),
            },
        }
    if msgtype == "geometry_msgs/msg/PoseStamped":
        return {"header": _header(rng), "pose": _pose(rng)}
    if msgtype == "sensor_msgs/msg/NavSatFix":
        return {
            "header": _header(rng),
            "status": {"status": int(rng.integers(-1, 3)), "service": int(rng.integers(0, 16))},
            "latitude": float(rng.uniform(-90, 90)),
            "longitude": float(rng.uniform(-180, 180)),
            "altitude": float(rng.normal() * 50),
            "position_covariance": _vec(rng, 9),
            "position_covariance_type": int(rng.integers(0, 4)),
        }
    if msgtype == "sensor_msgs/msg/Imu":
        return {
            "header": _header(rng),
            "orientation": _quat(rng),
            "orientation_covariance": _vec(rng, 9),
            "angular_velocity": _xyz(rng),
            "angular_velocity_covariance": _vec(rng, 9),
            "linear_acceleration": _xyz(rng),
            "linear_acceleration_covariance": _vec(rng, 9),
        }
    n = int(rng.choice([0, 0, 1, 2, 5, 9]))
    return {"header": _header(rng), "detections": [_detection(rng) for _ in range(n)]}


def make_messages(msgtype: str, n: int = 40, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [make_message(msgtype, rng) for _ in range(n)]


# --- serializers and reference decoders -------------------------------------------------------
def cdr_via_mcap(msgtype: str, messages: list[dict]) -> tuple[list[bytes], list]:
    """Write a real MCAP with mcap_ros2's Writer; read back raw bytes and reference decodes."""
    out = BytesIO()
    writer = Writer(out)
    schema = writer.register_msgdef(msgtype, schema_text(msgtype))
    for i, message in enumerate(messages):
        writer.write_message("/topic", schema, message, log_time=i, publish_time=i)
    writer.finish()
    out.seek(0)
    raw, decoded = [], []
    reader = make_reader(out, decoder_factories=[DecoderFactory()])
    for _, _, record, message in reader.iter_decoded_messages():
        raw.append(record.data)
        decoded.append(message)
    return raw, decoded


def mcap_ros2_decode(msgtype: str, raw: list[bytes]) -> list:
    schema = Schema(id=1, name=msgtype, encoding="ros2msg", data=schema_text(msgtype).encode())
    decode = DecoderFactory().decoder_for("cdr", schema)
    return [decode(data) for data in raw]


def _typestore(encoding: str):
    if encoding == "ros1":
        return get_typestore(Stores.ROS1_NOETIC)
    store = get_typestore(Stores.ROS2_HUMBLE)
    store.register(get_types_from_msg(schema_text(DETECTIONS), DETECTIONS))
    return store


def _build(store, typename: str, value: dict):
    """A rosbags message object from a dict (fields missing from the dict are zero, e.g. seq)."""
    args = {}
    for name, (node, spec) in store.fielddefs[typename][1]:
        item = value.get(name)
        if node == Nodetype.NAME:
            args[name] = _build(store, spec, item or {})
        elif node == Nodetype.SEQUENCE:
            args[name] = [_build(store, spec[0][1], v) for v in item]
        elif node == Nodetype.ARRAY:
            args[name] = np.array(item, dtype=spec[0][1][0])
        else:
            args[name] = item if item is not None else ("" if spec[0] == "string" else 0)
    return store.types[typename](**args)


def rosbags_serialize(msgtype: str, messages: list[dict], encoding: str, little=True) -> list:
    store = _typestore("ros1" if encoding == "ros1" else "cdr")
    objects = [_build(store, msgtype, m) for m in messages]
    if encoding == "ros1":
        return [bytes(store.serialize_ros1(o, msgtype)) for o in objects]
    return [bytes(store.serialize_cdr(o, msgtype, little_endian=little)) for o in objects]


def expected_columns(msgtype: str, decoded: list) -> dict[str, list]:
    """The raw columns, computed from reference-decoded message objects."""
    cols: dict[str, list] = {name: [] for name in COLUMNS[msgtype].split()}

    def put(**values):
        for key, value in values.items():
            cols[key].append(value)

    def stamp(header) -> int:
        return header.stamp.sec * 10**9 + header.stamp.nanosec

    for index, m in enumerate(decoded):
        if msgtype == DETECTIONS:
            for d in m.detections:
                c, q, s = d.bbox.center.position, d.bbox.center.orientation, d.bbox.size
                first = d.results[0].hypothesis if d.results else None
                put(msg_index=index, stamp_ns=stamp(m.header), frame_id=m.header.frame_id,
                    class_id=first.class_id if first else "",
                    score=first.score if first else np.nan, track_id=d.id,
                    cx=c.x, cy=c.y, cz=c.z, qx=q.x, qy=q.y, qz=q.z, qw=q.w,
                    sx=s.x, sy=s.y, sz=s.z)  # fmt: skip
            continue
        put(stamp_ns=stamp(m.header), frame_id=m.header.frame_id)
        if msgtype == "sensor_msgs/msg/NavSatFix":
            put(status=m.status.status, lat=m.latitude, lon=m.longitude, alt=m.altitude)
            continue
        if msgtype == "sensor_msgs/msg/Imu":
            q, w, a = m.orientation, m.angular_velocity, m.linear_acceleration
            put(qx=q.x, qy=q.y, qz=q.z, qw=q.w, wx=w.x, wy=w.y, wz=w.z, ax=a.x, ay=a.y, az=a.z)
            continue
        pose = m.pose.pose if msgtype == "nav_msgs/msg/Odometry" else m.pose
        p, q = pose.position, pose.orientation
        put(px=p.x, py=p.y, pz=p.z, qx=q.x, qy=q.y, qz=q.z, qw=q.w)
        if msgtype == "nav_msgs/msg/Odometry":
            v, w = m.twist.twist.linear, m.twist.twist.angular
            put(child_frame_id=m.child_frame_id, vx=v.x, vy=v.y, vz=v.z, wx=w.x, wy=w.y, wz=w.z)
    return cols


def assert_columns(msgtype: str, got: dict, want: dict) -> None:
    assert list(got) == COLUMNS[msgtype].split()
    lengths = {len(v) for v in got.values()}
    assert lengths == {len(want["stamp_ns"])}
    for name, values in got.items():
        assert isinstance(values, np.ndarray), name
        expected = want[name]
        if name in ("frame_id", "child_frame_id", "class_id", "track_id"):
            assert values.dtype == object, name
            assert values.tolist() == expected, name
        elif name in ("stamp_ns", "msg_index", "status"):
            assert values.dtype == np.int64, name
            np.testing.assert_array_equal(values, np.array(expected, dtype=np.int64), name)
        else:
            assert values.dtype == np.float64, name
            np.testing.assert_array_equal(values, np.array(expected, dtype=np.float64), name)


# --- CDR ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("msgtype", TYPES)
def test_cdr_matches_mcap_ros2(msgtype):
    raw, decoded = cdr_via_mcap(msgtype, make_messages(msgtype, seed=1))
    assert len({len(r) for r in raw}) > 1  # varied layouts in one batch
    got = bulk_decoder(msgtype, "cdr")(raw)
    assert_columns(msgtype, got, expected_columns(msgtype, decoded))


def test_detections_edge_cases():
    messages = make_messages(DETECTIONS, n=60, seed=2)
    messages[0]["detections"] = []  # first and last messages empty: rows must still line up
    messages[-1]["detections"] = []
    messages[5]["detections"] = [_detection(np.random.default_rng(3)) for _ in range(40)]
    for d in messages[5]["detections"][:7]:
        d["results"] = []
    raw, decoded = cdr_via_mcap(DETECTIONS, messages)
    got = bulk_decoder(DETECTIONS, "cdr")(raw)
    assert_columns(DETECTIONS, got, expected_columns(DETECTIONS, decoded))
    assert got["msg_index"].tolist().count(5) == 40
    assert 0 not in got["msg_index"] and len(messages) - 1 not in got["msg_index"]
    assert np.isnan(got["score"][got["class_id"] == ""]).sum() >= 7


def test_detections_all_empty():
    messages = make_messages(DETECTIONS, n=5, seed=4)
    for m in messages:
        m["detections"] = []
    raw, _ = cdr_via_mcap(DETECTIONS, messages)
    got = bulk_decoder(DETECTIONS, "cdr")(raw)
    assert list(got) == COLUMNS[DETECTIONS].split()
    assert all(len(v) == 0 for v in got.values())


@pytest.mark.parametrize("msgtype", TYPES)
def test_empty_batch(msgtype):
    got = bulk_decoder(msgtype, "cdr")([])
    assert list(got) == COLUMNS[msgtype].split()
    assert all(len(v) == 0 for v in got.values())


@pytest.mark.parametrize("msgtype", TYPES)
def test_big_endian_and_mixed_batches(msgtype):
    messages = make_messages(msgtype, n=30, seed=5)
    big = rosbags_serialize(msgtype, messages, "cdr", little=False)
    little = rosbags_serialize(msgtype, messages, "cdr", little=True)
    assert big[0][:2] == b"\x00\x00" and little[0][:2] == b"\x00\x01"
    want = expected_columns(msgtype, mcap_ros2_decode(msgtype, big))
    decode = bulk_decoder(msgtype, "cdr")
    assert_columns(msgtype, decode(big), want)
    mixed = [b if i % 3 else s for i, (b, s) in enumerate(zip(big, little, strict=True))]
    assert_columns(msgtype, decode(mixed), want)


def test_other_encapsulations_are_refused():
    raw, _ = cdr_via_mcap("sensor_msgs/msg/Imu", make_messages("sensor_msgs/msg/Imu", n=3))
    xcdr2 = b"\x00\x07" + raw[1][2:]  # XCDR2 aligns float64 to 4: reading it as CDR lies
    with pytest.raises(DecodeError, match="0x0007") as caught:
        bulk_decoder("sensor_msgs/msg/Imu", "cdr")([raw[0], xcdr2, raw[2]])
    assert caught.value.index == 1


# --- malformed input ---------------------------------------------------------------------------
@pytest.mark.parametrize("msgtype", TYPES)
def test_every_truncation_raises_decode_error(msgtype):
    messages = make_messages(msgtype, n=4, seed=6)
    if msgtype == DETECTIONS:
        messages[2]["detections"] = [_detection(np.random.default_rng(7)) for _ in range(3)]
    raw, _ = cdr_via_mcap(msgtype, messages)
    decode = bulk_decoder(msgtype, "cdr")
    assert decode(raw)  # the intact batch decodes
    for cut in range(len(raw[2])):
        batch = [raw[0], raw[1], raw[2][:cut], raw[3]]
        with pytest.raises(DecodeError, match=msgtype) as caught:
            decode(batch)
        assert caught.value.index == 2, cut


@pytest.mark.parametrize("encoding", ["cdr", "ros1"])
def test_trailing_garbage_raises(encoding):
    msgtype = "geometry_msgs/msg/PoseStamped"
    raw = rosbags_serialize(msgtype, make_messages(msgtype, n=2), encoding)
    with pytest.raises(DecodeError, match="unexpected bytes"):
        bulk_decoder(msgtype, encoding)([raw[0], raw[1] + bytes(16)])


def test_garbage_counts_raise_before_looping():
    messages = make_messages(DETECTIONS, n=2, seed=8)
    messages[1]["detections"] = [_detection(np.random.default_rng(9))]
    messages[1]["header"]["frame_id"] = "abc"  # detections count at body offset 8+4+4 = 16
    raw, _ = cdr_via_mcap(DETECTIONS, messages)
    body = bytearray(raw[1])
    assert int.from_bytes(body[4 + 16 : 4 + 20], "little") == 1
    body[4 + 16 : 4 + 20] = (2**32 - 1).to_bytes(4, "little")
    with pytest.raises(DecodeError, match="detections count = 4294967295"):
        bulk_decoder(DETECTIONS, "cdr")([raw[0], bytes(body)])


@pytest.mark.parametrize(
    ("written", "read_as"),
    [
        ("sensor_msgs/msg/Imu", "nav_msgs/msg/Odometry"),
        ("nav_msgs/msg/Odometry", "sensor_msgs/msg/Imu"),
        ("geometry_msgs/msg/PoseStamped", "sensor_msgs/msg/NavSatFix"),
        ("nav_msgs/msg/Odometry", DETECTIONS),
    ],
)
def test_wrong_type_raises(written, read_as):
    raw, _ = cdr_via_mcap(written, make_messages(written, n=5, seed=10))
    with pytest.raises(DecodeError, match=read_as):
        bulk_decoder(read_as, "cdr")(raw)


def test_short_message_and_error_class():
    with pytest.raises(DecodeError, match="less than the 4-byte CDR header") as caught:
        bulk_decoder("sensor_msgs/msg/Imu", "cdr")([b"\x00\x01"])
    error = caught.value
    assert isinstance(error, InputError)
    copy = pickle.loads(pickle.dumps(error))  # Dask moves errors between processes
    assert (type(copy), str(copy), copy.index, copy.msgtype) == (
        DecodeError, str(error), 0, "sensor_msgs/msg/Imu"
    )  # fmt: skip


# --- ROS 1 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("msgtype", ROS1_TYPES)
def test_ros1_matches_rosbags(msgtype):
    raw = rosbags_serialize(msgtype, make_messages(msgtype, seed=11), "ros1")
    store = _typestore("ros1")
    decoded = [store.deserialize_ros1(r, msgtype) for r in raw]
    got = bulk_decoder(msgtype, "ros1")(raw)
    assert_columns(msgtype, got, expected_columns(msgtype, decoded))
    for cut in range(0, len(raw[1]), 5):
        with pytest.raises(DecodeError):
            bulk_decoder(msgtype, "ros1")([raw[0], raw[1][:cut]])


# --- which decoder, from type, encoding and definition -------------------------------------------
def test_no_fast_path():
    assert bulk_decoder("std_msgs/msg/String", "cdr") is None
    assert bulk_decoder("nav_msgs/msg/Odometry", "json") is None
    assert bulk_decoder(DETECTIONS, "ros1") is None  # old ROS 1 vision_msgs layout
    assert bulk_decoder("nav_msgs/Odometry", "ros1") is not None  # ROS 1 spelling accepted


@pytest.mark.parametrize("msgtype", TYPES)
def test_standard_definitions_keep_the_fast_path(msgtype):
    assert bulk_decoder(msgtype, "cdr", schema_text(msgtype)) is not None
    if msgtype != DETECTIONS:
        assert bulk_decoder(msgtype, "ros1", schema_text(msgtype, "ros1")) is not None
        assert bulk_decoder(msgtype, "ros1", schema_text(msgtype, "cdr")) is None
        assert bulk_decoder(msgtype, "cdr", schema_text(msgtype, "ros1")) is None


def test_definition_spelling_comments_and_constants_do_not_matter():
    text = schema_text("sensor_msgs/msg/NavSatFix")
    text = text.replace("std_msgs/Header header", "Header header  # the header")
    text = text.replace("int8 status\n", "int8 STATUS_FIX=0\nint8 status # fix status\n")
    text = "# Navigation Satellite fix\n" + text.replace(
        "MSG: std_msgs/Header", "MSG: std_msgs/msg/Header"
    )
    assert bulk_decoder("sensor_msgs/msg/NavSatFix", "cdr", text) is not None


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # vision_msgs before the nested `hypothesis` (Foxy): {string id, float64 score, pose}
        ("ObjectHypothesis hypothesis\n", "string id\nfloat64 score\n"),
        # Detection3D without `string id`
        ("BoundingBox3D bbox\nstring id", "BoundingBox3D bbox"),
        # a float32 score changes every offset after it
        ("string class_id\nfloat64 score", "string class_id\nfloat32 score"),
    ],
)
def test_other_vision_msgs_layouts_have_no_fast_path(old, new):
    text = schema_text(DETECTIONS)
    assert old in text
    assert bulk_decoder(DETECTIONS, "cdr", text.replace(old, new)) is None


def test_empty_definition_means_standard_layout():
    assert bulk_decoder("sensor_msgs/msg/Imu", "cdr", "") is not None


def test_unparsable_definition_has_no_fast_path():
    idl = "module geometry_msgs { module msg { struct PoseStamped { double x; }; }; };"
    assert bulk_decoder("geometry_msgs/msg/PoseStamped", "cdr", idl) is None
    text = schema_text("geometry_msgs/msg/PoseStamped")
    assert bulk_decoder("geometry_msgs/msg/PoseStamped", "cdr", text.split("=" * 80)[0]) is None


# --- real logs ---------------------------------------------------------------------------------
needs_real_logs = pytest.mark.skipif(not REAL_LOGS.is_dir(), reason="shared/data/real-logs missing")


@needs_real_logs
def test_real_ros1_bag_matches_rosbags():
    from rosbags.rosbag1 import Reader

    store = _typestore("ros1")
    with Reader(REAL_LOGS / "robot_localization_test1_husky.bag") as bag:
        for connection in bag.connections:
            raw = [data for _, _, data in bag.messages(connections=[connection])]
            decode = bulk_decoder(connection.msgtype, "ros1", connection.msgdef.data)
            got = decode(raw)
            sample = raw[::25]
            want = expected_columns(
                connection.msgtype, [store.deserialize_ros1(r, connection.msgtype) for r in sample]
            )
            assert_columns(connection.msgtype, {k: v[::25] for k, v in got.items()}, want)


@needs_real_logs
def test_real_mcap_matches_mcap_ros2():
    msgtype = "geometry_msgs/msg/PoseStamped"
    with open(REAL_LOGS / "cubs2_cub_stabilize_2025_11_13.mcap", "rb") as handle:
        raw, found = [], None
        for schema, _, record in make_reader(handle).iter_messages():
            if schema.name == msgtype:
                raw.append(record.data)
                found = schema
    assert len(raw) == 19703
    got = bulk_decoder(msgtype, "cdr", found.data.decode())(raw)
    decode = DecoderFactory().decoder_for("cdr", found)
    want = expected_columns(msgtype, [decode(r) for r in raw[::20]])
    assert_columns(msgtype, {k: v[::20] for k, v in got.items()}, want)
