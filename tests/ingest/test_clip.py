"""`flywheel export clip`: a scene's window of original messages, as MCAP, checked against an
independent read of the source (the mcap reader for MCAP, rosbags or sqlite3 for bags), on a
generated log and on real ROS 1 and ROS 2 logs. Real files, no mocks."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from mcap.reader import make_reader

import ingest
from flywheel.errors import UsageError
from flywheel.lake import Lake
from ingest.clip import write_clip
from sim import generate
from tests.faults.conftest import flywheel

from .conftest import REAL_LOGS

BAG = REAL_LOGS / "robot_localization_test1_husky.bag"
ROS2_MCAP_FOLDER = REAL_LOGS / "rosbags_rs_test_bag_mcap"
real = pytest.mark.skipif(not REAL_LOGS.is_dir(), reason="shared/data/real-logs missing")


# --- independent reads ------------------------------------------------------------------------


def read_mcap(path: Path, start: int = 0, end: int = 2**63, topics=None):
    """(profile, Counter of (topic, log_time, publish_time, data), {topic: channel facts}),
    reading every message (no index, no time filter) and filtering here."""
    messages: Counter = Counter()
    channels = {}
    with open(path, "rb") as f:
        reader = make_reader(f)
        profile = reader.get_header().profile
        for schema, channel, message in reader.iter_messages():
            if not start <= message.log_time < end or (topics and channel.topic not in topics):
                continue
            messages[(channel.topic, message.log_time, message.publish_time, message.data)] += 1
            channels[channel.topic] = (
                channel.message_encoding,
                schema.name if schema else None,
                schema.encoding if schema else None,
                bytes(schema.data) if schema else None,
            )
    return profile, messages, channels


def read_bag(path: Path, start: int, end: int):
    """The same facts from a ROS 1 bag, through rosbags (whole bag, filtered here)."""
    from rosbags.rosbag1 import Reader

    messages: Counter = Counter()
    channels = {}
    with Reader(path) as reader:
        for conn, t, data in reader.messages():
            if start <= t < end:
                messages[(conn.topic, t, t, bytes(data))] += 1
                channels[conn.topic] = (
                    "ros1",
                    conn.msgtype.replace("/msg/", "/"),
                    "ros1msg",
                    conn.msgdef.data.encode(),
                )
    return messages, channels


def read_db3(path: Path, start: int, end: int):
    """The same facts from a ROS 2 .db3 with plain sqlite3; schemas from message_definitions."""
    con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    topics = {tid: (name, fmt, ty) for tid, name, ty, fmt in con.execute(
        "SELECT id, name, type, serialization_format FROM topics"
    )}  # fmt: skip
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    definitions = {}
    if "message_definitions" in tables:
        definitions = dict(
            con.execute("SELECT topic_type, encoded_message_definition FROM message_definitions")
        )
    messages: Counter = Counter()
    channels = {}
    for tid, t, data in con.execute("SELECT topic_id, timestamp, data FROM messages"):
        if start <= t < end:
            name, fmt, ty = topics[tid]
            messages[(name, t, t, bytes(data))] += 1
            channels[name] = (fmt, ty, "ros2msg", definitions.get(ty, "").encode())
    con.close()
    return messages, channels


def per_topic(messages: Counter) -> dict[str, int]:
    counts: Counter = Counter()
    for (topic, *_), n in messages.items():
        counts[topic] += n
    return dict(counts)


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """One generated log of 40 s ingested: (lake, the log's path, [(scene_id, start, end)])."""
    root = tmp_path_factory.mktemp("clip")
    (log,) = generate(root / "drives", logs=1, seconds=40, seed=3)
    lake = root / "lake"
    assert ingest.ingest([log], lake, workers=1).exit_code == 0
    with Lake(lake).connect() as con:
        scenes = con.execute(
            "SELECT scene_id, start_ns, end_ns FROM scenes ORDER BY start_ns"
        ).fetchall()
    assert len(scenes) >= 3
    return lake, log, scenes


@pytest.fixture(scope="module")
def real_lake(tmp_path_factory):
    """The husky ROS 1 bag and a ROS 2 (MCAP storage) rosbag2 folder, ingested."""
    if not REAL_LOGS.is_dir():
        pytest.skip("shared/data/real-logs missing")
    lake = tmp_path_factory.mktemp("real") / "lake"
    assert ingest.ingest([BAG, ROS2_MCAP_FOLDER], lake, workers=1).exit_code == 0
    return lake


def scenes_of(lake: Path, source: Path) -> list[tuple[str, int, int]]:
    with Lake(lake).connect() as con:
        return con.execute(
            "SELECT s.scene_id, s.start_ns, s.end_ns FROM scenes s JOIN logs l USING (log_id) "
            "WHERE l.source_uri = ? ORDER BY s.start_ns",
            [source.absolute().as_uri()],
        ).fetchall()


def export(*args) -> tuple[int, dict | None, str]:
    done = flywheel("export", "clip", *map(str, args), "--format", "json")
    return done.returncode, json.loads(done.stdout) if done.returncode == 0 else None, done.stderr


# --- the generated MCAP log -------------------------------------------------------------------


def test_clip_holds_exactly_the_window(generated, tmp_path):
    lake, log, scenes = generated
    scene_id, start, end = scenes[1]
    out = tmp_path / "clip.mcap"
    code, summary, err = export(scene_id, "--out", out, "--lake", lake)
    assert code == 0, err
    profile, want, want_channels = read_mcap(log, start, end)
    clip_profile, got, got_channels = read_mcap(out)
    assert want and got == want  # the (topic, log_time, publish_time, payload) multiset
    assert clip_profile == profile == "ros2"
    assert got_channels == want_channels  # topic, message encoding, schema name/encoding/data
    assert summary["scene_id"] == scene_id
    assert summary["source_uri"] == log.absolute().as_uri()
    assert summary["out"] == str(out.absolute())
    assert (summary["start_ns"], summary["end_ns"]) == (start, end)
    assert summary["topics"] == per_topic(want)
    assert summary["messages"] == sum(want.values())
    assert summary["bytes"] == out.stat().st_size
    # chunked, indexed, with statistics: what Foxglove and `mcap info` read
    with open(out, "rb") as f:
        info = make_reader(f).get_summary()
    assert info.chunk_indexes and info.statistics.message_count == sum(want.values())
    assert dict(info.statistics.channel_message_counts) == {
        cid: per_topic(want)[ch.topic] for cid, ch in info.channels.items()
    }


def test_pad_widens_and_topics_narrow(generated, tmp_path):
    lake, log, scenes = generated
    scene_id, start, end = scenes[1]
    pad = 2_500_000_000
    out = tmp_path / "pad.mcap"
    code, summary, err = export(scene_id, "--out", out, "--lake", lake, "--pad", 2.5)
    assert code == 0, err
    _, want, _ = read_mcap(log, start - pad, end + pad)
    _, narrow, _ = read_mcap(log, start, end)
    assert read_mcap(out)[1] == want
    assert sum(want.values()) > sum(narrow.values())
    assert (summary["start_ns"], summary["end_ns"]) == (start - pad, end + pad)

    topics = {"/odom", "/gnss/fix"}
    _, want, _ = read_mcap(log, start, end, topics)
    for args in (["--topics", "/odom,/gnss/fix"], ["--topics", "/odom", "--topics", "/gnss/fix"]):
        out = tmp_path / "topics.mcap"
        code, summary, err = export(scene_id, "--out", out, "--lake", lake, *args)
        assert code == 0, err
        assert set(summary["topics"]) == topics
        assert read_mcap(out)[1] == want


def test_unknown_scene_exits_2_and_writes_nothing(generated, tmp_path):
    lake, _, _ = generated
    out = tmp_path / "clip.mcap"
    for scene_id in ("0123456789abcdef0123-99999", "x'; DROP TABLE scenes; --"):
        code, _, err = export(scene_id, "--out", out, "--lake", lake)
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1 and "unknown scene id" in err
        assert not out.exists() and not list(tmp_path.iterdir())


def test_unknown_topic_exits_2_and_keeps_the_old_file(generated, tmp_path):
    lake, _, scenes = generated
    out = tmp_path / "clip.mcap"
    out.write_bytes(b"the old file")
    code, _, err = export(scenes[0][0], "--out", out, "--lake", lake, "--topics", "/nope")
    assert code == 2 and "/nope" in err
    assert out.read_bytes() == b"the old file" and [p.name for p in tmp_path.iterdir()] == [
        "clip.mcap"
    ]
    # an existing file is replaced whole
    code, summary, err = export(scenes[0][0], "--out", out, "--lake", lake)
    assert code == 0, err
    assert read_mcap(out)[1] and summary["bytes"] == out.stat().st_size


def test_missing_source_exits_1_naming_it(generated, tmp_path):
    _, log, _ = generated
    folder = tmp_path / "moved\nlogs"  # a newline in the path: printed escaped, on one line
    folder.mkdir()
    copy = folder / log.name
    shutil.copyfile(log, copy)
    lake = tmp_path / "lake"
    assert ingest.ingest([copy], lake, workers=1).exit_code == 0
    (scene_id, _, _), *_ = scenes_of(lake, copy)
    copy.unlink()
    out = tmp_path / "clip.mcap"
    code, _, err = export(scene_id, "--out", out, "--lake", lake)
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert "moved\\nlogs" in err and log.name in err and "missing" in err
    assert not out.exists()


def test_ingesting_the_clip_gives_the_same_rows(generated, tmp_path):
    lake, _, scenes = generated
    scene_id, start, end = scenes[1]
    out = tmp_path / "clip.mcap"
    summary = ingest.export_clip(lake, scene_id, out)
    assert summary.messages > 0 and "scene" in str(summary)
    clip_lake = tmp_path / "clip-lake"
    assert ingest.ingest([out], clip_lake, workers=1).exit_code == 0
    columns = "t_ns, stamp_ns, log_time_ns, x, y, z, yaw, speed, yaw_rate, frame_id"
    window = f"SELECT log_id, {columns}, accel FROM ego WHERE log_time_ns >= ? AND log_time_ns < ?"
    with Lake(lake).connect() as con:
        original = con.execute(window + " ORDER BY t_ns", [start, end]).df()
    with Lake(clip_lake).connect() as con:
        clipped = con.execute(window + " ORDER BY t_ns", [start, end]).df()
        (n_all,) = con.execute("SELECT count(*) FROM ego").fetchone()
    assert len(original) > 0 and len(clipped) == len(original) == n_all
    assert set(clipped["log_id"]) != set(original["log_id"])
    for name in columns.split(", "):
        assert clipped[name].tolist() == original[name].tolist(), name
    # accel is a derivative over neighbours: equal away from the clip's two ends
    inner = slice(10, len(original) - 10)
    a, b = original["accel"].tolist()[inner], clipped["accel"].tolist()[inner]
    assert a == pytest.approx(b)


# --- real logs --------------------------------------------------------------------------------


@real
def test_ros1_bag_clip(real_lake, tmp_path):
    scenes = scenes_of(real_lake, BAG)
    scene_id, start, end = scenes[len(scenes) // 2]
    out = tmp_path / "bag.mcap"
    code, summary, err = export(scene_id, "--out", out, "--lake", real_lake, "--pad", 1)
    assert code == 0, err
    pad = 10**9
    want, want_channels = read_bag(BAG, start - pad, end + pad)
    profile, got, got_channels = read_mcap(out)
    assert profile == "ros1"
    assert want and got == want
    assert got_channels == want_channels  # ros1msg schemas: the bag's own definitions
    assert summary["topics"] == per_topic(want)
    with open(out, "rb") as f:
        channels = make_reader(f).get_summary().channels.values()
    assert all(len(c.metadata["md5sum"]) == 32 for c in channels)


@real
def test_ros2_mcap_folder_clip(real_lake, tmp_path):
    ((scene_id, start, end),) = scenes_of(real_lake, ROS2_MCAP_FOLDER)
    out = tmp_path / "ros2.mcap"
    code, summary, err = export(scene_id, "--out", out, "--lake", real_lake)
    assert code == 0, err
    (storage,) = ROS2_MCAP_FOLDER.glob("*.mcap")
    _, want, want_channels = read_mcap(storage, start, end)
    profile, got, got_channels = read_mcap(out)
    assert profile == "ros2" and want and got == want and got_channels == want_channels
    assert summary["messages"] == sum(want.values())


@real
@pytest.mark.parametrize(
    "source, db3",
    [
        ("rosbag2_cdr_test_sqlite3", "rosbag2_cdr_test_sqlite3/cdr_test_0.db3"),
        ("rosbag2_talker_sqlite3", "rosbag2_talker_sqlite3/talker.db3"),
        ("nebula_ars548_radar_1708578204.db3", "nebula_ars548_radar_1708578204.db3"),
    ],
)
def test_ros2_db3_window(source, db3, tmp_path):
    """The window writer on real .db3 bags (none of them has an ego topic, so no scenes)."""
    everything, _ = read_db3(REAL_LOGS / db3, 0, 2**63)
    times = sorted(t for (_, t, _, _) in everything)
    start, end = times[len(times) // 3], times[-1]  # a window that cuts both ends
    want, want_channels = read_db3(REAL_LOGS / db3, start, end)
    out = tmp_path / "db3.mcap"
    summary = write_clip(REAL_LOGS / source, out, start, end)
    profile, got, got_channels = read_mcap(out)
    assert profile == "ros2" and 0 < sum(got.values()) < len(times)
    assert got == want
    for topic, (fmt, msgtype, encoding, definition) in want_channels.items():
        got_fmt, got_type, got_encoding, got_definition = got_channels[topic]
        assert (
            (got_fmt, got_type, got_encoding)
            == (fmt, msgtype, encoding)
            == ("cdr", msgtype, "ros2msg")
        )
        if definition.strip():  # the file's own definition, as it is
            assert got_definition == definition
    if source.startswith("nebula"):  # no definitions table, a type no typestore knows
        assert got_channels[next(iter(got_channels))][3] == b""
        assert summary.notes and "nebula_msgs/msg/NebulaPackets" in summary.notes[0]
    with open(out, "rb") as f:
        channels = make_reader(f).get_summary().channels.values()
    assert all("offered_qos_profiles" in c.metadata for c in channels)


def test_the_index_is_used_and_the_source_is_never_the_output(generated, tmp_path):
    """A chunk outside the window is never read: damage there does not touch the clip."""
    _, log, scenes = generated
    _, start, end = scenes[-1]
    copy = tmp_path / "damaged.mcap"
    shutil.copyfile(log, copy)
    with open(copy, "rb") as f:
        chunks = make_reader(f).get_summary().chunk_indexes
    early = [c for c in chunks if c.message_end_time < start]
    assert early
    with open(copy, "r+b") as f:  # garble the compressed records of every chunk before
        for chunk in early:
            f.seek(chunk.chunk_start_offset + chunk.chunk_length // 2)
            f.write(b"\xff" * 64)
    with pytest.raises(Exception):  # noqa: B017 - a full read does fail on the damage
        read_mcap(copy)
    out = tmp_path / "clip.mcap"
    summary = write_clip(copy, out, start, end)
    assert read_mcap(out)[1] == read_mcap(log, start, end)[1] and summary.messages > 0
    with pytest.raises(UsageError, match="source log itself"):
        write_clip(copy, copy, start, end)
    assert copy.stat().st_size == log.stat().st_size


@pytest.fixture(scope="module")
def db3_lake(generated, tmp_path_factory):
    """The generated log rewritten as a rosbag2 sqlite3 folder by rosbags, ingested."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    _, log, _ = generated
    root = tmp_path_factory.mktemp("db3")
    store = get_typestore(Stores.EMPTY)
    with open(log, "rb") as f:
        reader = make_reader(f)
        for schema in reader.get_summary().schemas.values():
            store.register(get_types_from_msg(schema.data.decode(), schema.name))
        with Writer(root / "bag", version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
            connections = {}
            for schema, channel, message in reader.iter_messages():
                if channel.id not in connections:
                    connections[channel.id] = writer.add_connection(
                        channel.topic, schema.name, typestore=store
                    )
                writer.write(connections[channel.id], message.log_time, message.data)
    lake = root / "lake"
    assert ingest.ingest([root / "bag"], lake, workers=1).exit_code == 0
    return lake, root / "bag"


def test_ros2_db3_scene_clip(db3_lake, tmp_path):
    from rosbags.rosbag2 import Reader

    lake, bag = db3_lake
    scene_id, start, end = scenes_of(lake, bag)[1]
    out = tmp_path / "db3.mcap"
    code, summary, err = export(scene_id, "--out", out, "--lake", lake, "--topics", "/odom")
    assert code == 0, err
    with Reader(bag) as reader:  # rosbags' own rosbag2 reader, every message, filtered here
        want = Counter(
            (c.topic, t, t, bytes(data))
            for c, t, data in reader.messages()
            if start <= t < end and c.topic == "/odom"
        )
    (db3,) = bag.glob("*.db3")
    _, channels = read_db3(db3, start, end)
    profile, got, got_channels = read_mcap(out)
    assert profile == "ros2" and want and got == want
    assert summary["topics"] == {"/odom": sum(want.values())}
    assert got_channels["/odom"][:3] == ("cdr", "nav_msgs/msg/Odometry", "ros2msg")
    assert got_channels["/odom"][3] == channels["/odom"][3] != b""
