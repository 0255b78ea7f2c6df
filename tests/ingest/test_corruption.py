"""Damaged files: what is intact lands, the loss is counted, and the run says so (exit 1).

Each case damages a valid file in one place and checks, through `ingest`, that the log is in
the lake with `complete` false, `expected_messages` from the file's own index, a quarantine
row naming the damage, and at least every message of every undamaged chunk (or page). The
undamaged count is computed here with other readers (the mcap library, rosbags, the sqlite
page header), not with ours.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from mcap.reader import make_reader
from mcap.records import Message
from mcap.stream_reader import StreamReader, breakup_chunk

from flywheel.lake import Lake
from ingest import ingest
from sim import generate

from .conftest import REAL_LOGS
from .test_readers import write_ros1_bag, write_rosbag2

COMPRESSIONS = ["zstd", "lz4", "none"]


@dataclass
class Chunk:
    start: int  # offset of the chunk record
    end: int  # first byte after it (its message indexes follow)
    records: int  # offset of its (compressed) records
    messages: Counter  # topic -> messages in it


def mcap_chunks(path: Path) -> tuple[list[Chunk], int]:
    """Every chunk of an MCAP file and its messages per topic, read with the mcap library."""
    with open(path, "rb") as f:
        summary = make_reader(f).get_summary()
        topics = {cid: channel.topic for cid, channel in summary.channels.items()}
        chunks = []
        for index in sorted(summary.chunk_indexes, key=lambda c: c.chunk_start_offset):
            f.seek(index.chunk_start_offset)
            raw = f.read(index.chunk_length)
            records = StreamReader(io.BytesIO(raw), skip_magic=True, emit_chunks=True).records
            chunk = next(iter(records))
            inner = [r for r in breakup_chunk(chunk) if isinstance(r, Message)]
            header = 9 + 8 + 8 + 8 + 4 + 4 + len(chunk.compression) + 8
            chunks.append(
                Chunk(
                    index.chunk_start_offset,
                    index.chunk_start_offset + index.chunk_length,
                    index.chunk_start_offset + header,
                    Counter(topics[m.channel_id] for m in inner),
                )
            )
    return chunks, summary.statistics.message_count


@pytest.fixture(scope="module")
def drives(tmp_path_factory) -> dict[str, Path]:
    """A 20 s generated drive (3 chunks, 420 messages) per chunk compression."""
    out = tmp_path_factory.mktemp("corruption")
    return {
        c: generate(out / c, logs=1, seconds=20, seed=5, compression=c)[0] for c in COMPRESSIONS
    }


@dataclass
class Landed:
    exit_code: int
    status: str
    message_count: int
    expected: int | None
    complete: bool | None
    topics: Counter
    reasons: list[str]


def ingest_damaged(tmp_path: Path, path: Path) -> Landed:
    lake = Lake(tmp_path / "lake")
    summary = ingest([path], lake)
    (result,) = summary.results
    con = lake.connect()
    row = con.execute("SELECT message_count, expected_messages, complete, topics FROM logs")
    row = row.fetchone() or (0, None, None, "[]")
    reasons = [r for (r,) in con.execute("SELECT reason FROM quarantine").fetchall()]
    topics = Counter({t["topic"]: t["count"] for t in json.loads(row[3])})
    return Landed(summary.exit_code, result.status, row[0], row[1], row[2], topics, reasons)


def assert_salvaged(landed: Landed, intact: Counter, total: int, expected: int | None) -> None:
    """Exit 1, one quarantine line, complete false, and every intact message landed."""
    assert landed.exit_code == 1
    assert landed.status == "salvaged" and landed.complete is False
    assert len(landed.reasons) == 1 and "damaged" in landed.reasons[0]
    assert landed.expected == expected
    assert sum(intact.values()) <= landed.message_count <= total
    for topic, n in intact.items():
        assert landed.topics[topic] >= n, topic


def write(tmp_path: Path, name: str, data: bytes | bytearray) -> Path:
    path = tmp_path / "in" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(bytes(data))
    return path


# --- MCAP ---------------------------------------------------------------------------------


def intact_before(chunks: list[Chunk], cut: int) -> Counter:
    return sum((c.messages for c in chunks if c.end <= cut), Counter())


def intact_except(chunks: list[Chunk], damaged: Chunk) -> Counter:
    return sum((c.messages for c in chunks if c is not damaged), Counter())


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("where", ["inside chunk 1", "after chunk 1", "half", "in the summary"])
def test_a_truncated_mcap_keeps_every_chunk_before_the_cut(drives, tmp_path, compression, where):
    source = drives[compression]
    data = source.read_bytes()
    chunks, total = mcap_chunks(source)
    assert len(chunks) >= 3
    cut = {
        "inside chunk 1": chunks[1].start + (chunks[1].end - chunks[1].start) // 3,
        "after chunk 1": chunks[1].end,
        "half": len(data) // 2,
        "in the summary": len(data) - 40,
    }[where]
    landed = ingest_damaged(tmp_path, write(tmp_path, "cut.mcap", data[:cut]))
    # a cut in the data section takes the summary with it: nothing says how many were lost
    expected = total if where == "in the summary" else None
    assert_salvaged(landed, intact_before(chunks, cut), total, expected)
    assert "cut short" in landed.reasons[0] or "ends early" in landed.reasons[0]


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_flipped_bits_in_one_chunk_cost_at_most_that_chunk(drives, tmp_path, compression):
    source = drives[compression]
    chunks, total = mcap_chunks(source)
    damaged = chunks[1]
    data = bytearray(source.read_bytes())
    rng = random.Random(3)
    for _ in range(3):
        data[rng.randrange(damaged.records + 16, damaged.end)] ^= 1 << rng.randrange(8)
    landed = ingest_damaged(tmp_path, write(tmp_path, "flipped.mcap", data))
    assert_salvaged(landed, intact_except(chunks, damaged), total, total)
    assert f"chunk at byte {damaged.start:,}" in landed.reasons[0]


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_a_zeroed_chunk_is_counted_as_lost(drives, tmp_path, compression):
    source = drives[compression]
    chunks, total = mcap_chunks(source)
    damaged = chunks[1]
    data = bytearray(source.read_bytes())
    data[damaged.start : damaged.end] = bytes(damaged.end - damaged.start)
    landed = ingest_damaged(tmp_path, write(tmp_path, "zeroed.mcap", data))
    intact = intact_except(chunks, damaged)
    assert_salvaged(landed, intact, total, total)
    assert landed.message_count == sum(intact.values())  # nothing of it, all of the rest
    assert f"{total - landed.message_count:,} lost" in landed.reasons[0]


@pytest.mark.parametrize("compression", ["zstd", "lz4"])
def test_a_damaged_compressed_frame_costs_only_its_chunk(drives, tmp_path, compression):
    source = drives[compression]
    chunks, total = mcap_chunks(source)
    damaged = chunks[1]
    data = bytearray(source.read_bytes())
    middle = (damaged.records + damaged.end) // 2
    data[middle : middle + 64] = random.Random(1).randbytes(64)
    landed = ingest_damaged(tmp_path, write(tmp_path, "frame.mcap", data))
    assert_salvaged(landed, intact_except(chunks, damaged), total, total)


def test_garbage_appended_to_an_mcap_is_reported(drives, tmp_path):
    source = drives["zstd"]
    chunks, total = mcap_chunks(source)
    data = source.read_bytes() + b"\x00garbage\x05" * 50
    landed = ingest_damaged(tmp_path, write(tmp_path, "appended.mcap", data))
    assert_salvaged(landed, intact_except(chunks, None), total, total)
    assert landed.message_count == total and "after the end" in landed.reasons[0]


@pytest.mark.skipif(not REAL_LOGS.is_dir(), reason="shared/data/real-logs missing")
def test_a_chunk_without_crc_is_checked_against_its_message_index(tmp_path):
    # rosbags wrote this file: one uncompressed chunk, no CRC, 188 messages in its index
    source = REAL_LOGS / "rosbags_rs_test_bag_mcap" / "test_bag_mcap.mcap"
    data = bytearray(source.read_bytes())
    with open(source, "rb") as f:
        messages = [m for _, _, m in make_reader(f).iter_messages(log_time_order=False)]
    assert len(messages) == 188
    for n, damage in ((40, "log time"), (120, "length")):
        m = messages[n]
        at = bytes(data).find(struct.pack("<QQ", m.log_time, m.publish_time) + m.data)
        assert at > 0 and bytes(data).count(struct.pack("<QQ", m.log_time, m.publish_time)) == 1
        if damage == "log time":
            data[at : at + 8] = struct.pack("<Q", m.log_time + 1)
        else:  # the record's length field: the walk loses its place after it
            data[at - 14 : at - 6] = struct.pack("<Q", 1 << 40)
    landed = ingest_damaged(tmp_path, write(tmp_path, "nocrc.mcap", data))
    assert_salvaged(landed, Counter(), 188, 188)
    assert landed.message_count == 186  # the two damaged ones; the index finds all the others


# --- ROS 1 bags ---------------------------------------------------------------------------


def bag_chunks(path: Path) -> list[tuple[int, int, int]]:
    """(start, end, messages) of each chunk, from rosbags' reading of the bag's index."""
    from rosbags.rosbag1 import Reader

    with Reader(path) as reader:
        infos = [(c.pos, sum(c.connection_counts.values())) for c in reader.chunk_infos]
        index_pos = reader.bio.seek(0, 2)  # the index follows the last chunk's index data
    ends = [pos for pos, _ in infos[1:]] + [index_pos]
    return [(pos, end, n) for (pos, n), end in zip(infos, ends, strict=True)]


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    return write_ros1_bag(tmp_path_factory.mktemp("bag") / "run.bag", n=400)


def test_a_damaged_ros1_chunk_costs_that_chunk_and_later_chunks_land(bag, tmp_path):
    chunks = bag_chunks(bag)
    assert len(chunks) >= 4
    start, _, lost = chunks[1]
    data = bytearray(bag.read_bytes())
    data[start + 80 : start + 120] = bytes(40)  # inside the chunk's bz2 data
    landed = ingest_damaged(tmp_path, write(tmp_path, "damaged.bag", data))
    assert_salvaged(landed, Counter({"/odom": 400 - lost}), 400, 400)
    assert landed.message_count == 400 - lost
    assert f"chunk at byte {start:,}" in landed.reasons[0]


def test_a_zeroed_ros1_chunk_is_skipped_to_the_next(bag, tmp_path):
    chunks = bag_chunks(bag)
    start, end, lost = chunks[2]
    data = bytearray(bag.read_bytes())
    data[start:end] = bytes(end - start)
    landed = ingest_damaged(tmp_path, write(tmp_path, "zeroed.bag", data))
    assert_salvaged(landed, Counter({"/odom": 400 - lost}), 400, 400)


def test_a_truncated_ros1_bag_keeps_every_chunk_before_the_cut(bag, tmp_path):
    chunks = bag_chunks(bag)
    data = bag.read_bytes()
    for cut in (chunks[2][0] + 50, len(data) // 2):
        before = sum(n for _, end, n in chunks if end <= cut)
        landed = ingest_damaged(tmp_path / str(cut), write(tmp_path, f"cut{cut}.bag", data[:cut]))
        assert_salvaged(landed, Counter({"/odom": before}), 400, None)


def test_an_uncompressed_ros1_chunk_with_a_damaged_record_loses_only_that_record(tmp_path):
    from rosbags.rosbag1 import Writer

    from .test_readers import T0, ros1_odometry, ros1_store

    store = ros1_store()
    path = tmp_path / "plain.bag"
    writer = Writer(path)
    writer.chunk_threshold = 1 << 20  # one chunk of 100 records
    with writer:
        conn = writer.add_connection("/odom", "nav_msgs/msg/Odometry", typestore=store)
        for i in range(100):
            msg = ros1_odometry(store, T0 + i * 10**8, 0.1 * i, 1.0)
            writer.write(conn, T0 + i * 10**8, store.serialize_ros1(msg, "nav_msgs/msg/Odometry"))
    data = bytearray(path.read_bytes())
    for n, damage in ((30, "field name"), (60, "header length")):
        t = T0 + n * 10**8
        at = bytes(data).find(b"time=" + struct.pack("<II", t // 10**9, t % 10**9))
        record = at - 29  # rosbags writes a message header as op, conn, time
        assert data[record : record + 4] == struct.pack("<I", 38)
        if damage == "field name":  # one flipped bit: 'time' becomes 'tyme'
            data[at + 1] ^= 0x10
        else:  # the walk loses its place after this record
            data[record : record + 4] = struct.pack("<I", 1 << 30)
    landed = ingest_damaged(tmp_path, write(tmp_path, "plain-damaged.bag", data))
    assert_salvaged(landed, Counter({"/odom": 98}), 100, 100)
    assert landed.message_count == 98  # the index data finds every other message


# --- ROS 2 .db3 ---------------------------------------------------------------------------


def table_leaf_in_the_middle(data: bytes, page: int = 4096) -> tuple[int, int]:
    """(page number, cells) of a table-leaf page past the middle of a sqlite file."""
    pages = len(data) // page
    for number in range(pages // 2, pages):
        at = number * page
        if data[at] == 0x0D:  # b-tree table leaf; its cell count is at offset 3
            return number, struct.unpack_from(">H", data, at + 3)[0]
    raise AssertionError("no table-leaf page")


def test_a_damaged_db3_page_costs_only_its_rows(tmp_path):
    folder = write_rosbag2(tmp_path / "bag", n=3000)
    db3 = next(folder.glob("*.db3"))
    data = bytearray(db3.read_bytes())
    number, cells = table_leaf_in_the_middle(bytes(data))
    data[number * 4096 : (number + 1) * 4096] = bytes(4096)
    landed = ingest_damaged(tmp_path / "bare", write(tmp_path, "damaged.db3", data))
    assert_salvaged(landed, Counter({"/fix": 3000 - cells}), 3000, 3000)
    assert landed.message_count == 3000 - cells
    # the same file in its rosbag2 folder: metadata.yaml says how many the bag holds
    db3.write_bytes(bytes(data))
    landed = ingest_damaged(tmp_path / "folder", folder)
    assert_salvaged(landed, Counter({"/fix": 3000 - cells}), 3000, 3000)


def test_a_rosbag2_folder_missing_a_listed_file_is_incomplete(tmp_path):
    if not REAL_LOGS.is_dir():
        pytest.skip("shared/data/real-logs missing")
    folder = tmp_path / "wbag"
    shutil.copytree(REAL_LOGS / "rosbag2_wbag_mcap", folder)
    (folder / "wbag_2.mcap").unlink()
    landed = ingest_damaged(tmp_path, folder)
    assert_salvaged(landed, Counter(), 6074, 6074)
    assert landed.message_count == 6074 - 1240 and "wbag_2.mcap" in landed.reasons[0]
