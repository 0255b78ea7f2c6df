"""Random damage to small valid logs never crashes or hangs ingest, nor invents messages.

Each example mutates a small MCAP, ROS 1 bag or .db3 (flipped bytes, overwritten runs, a cut,
inserted or appended bytes) and ingests it. Whatever happens, the result is a log in the lake
or a quarantine line, never an exception; no more messages land than the intact file holds;
and a log that claims to be complete holds exactly the intact count.

A few examples per format run with the suite (a few seconds); set FLYWHEEL_FUZZ_EXAMPLES for a
longer run, e.g. nightly: ``FLYWHEEL_FUZZ_EXAMPLES=2000 pytest tests/ingest/test_fuzz.py``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcap.writer import CompressionType

from flywheel.lake import Lake
from ingest import ingest
from ingest.pipeline import FileResult

from .conftest import REAL_LOGS
from .test_readers import (
    T0,
    ros1_odometry,
    ros1_store,
    write_ros1_bag,
    write_ros2_mcap,
    write_rosbag2,
)

EXAMPLES = int(os.environ.get("FLYWHEEL_FUZZ_EXAMPLES", "15"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=10),  # one example; a hang fails it (and pytest-timeout)
    suppress_health_check=[HealthCheck.too_slow],
    database=None,  # no .hypothesis folder in the tree
    derandomize=EXAMPLES <= 50,  # the short run is the same every time; a long one explores
)
TIMEOUT = 60 + EXAMPLES * 5


def _plain_bag(path: Path, n: int) -> Path:
    """An uncompressed ROS 1 bag of several chunks (bz2 hides most damage in its checksum)."""
    from rosbags.rosbag1 import Writer

    store = ros1_store()
    writer = Writer(path)
    writer.chunk_threshold = 2048
    with writer:
        conn = writer.add_connection("/odom", "nav_msgs/msg/Odometry", typestore=store)
        for i in range(n):
            msg = ros1_odometry(store, T0 + i * 10**8, 0.1 * i, 1.0)
            writer.write(conn, T0 + i * 10**8, store.serialize_ros1(msg, "nav_msgs/msg/Odometry"))
    return path


CONFORMANCE = ("TenMessages-pad-st-sum.mcap", "TenMessages-ch-chx-mx-pad-st-sum.mcap")
NAMES = ["zstd.mcap", "plain.mcap", "run.bag", "plain.bag", "run.db3"] + [
    name for name in CONFORMANCE if (REAL_LOGS / "conformance" / "TenMessages" / name).is_file()
]


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> dict[str, tuple[bytes, int]]:
    """name -> (bytes, messages) of one small valid log of each container."""
    folder = tmp_path_factory.mktemp("fuzz")
    zstd = write_ros2_mcap(folder / "zstd.mcap", n=40)  # 120 messages, one chunk
    plain = write_ros2_mcap(folder / "plain.mcap", n=40, compression=CompressionType.NONE)
    bag = write_ros1_bag(folder / "run.bag", n=60)  # bz2, several chunks
    db3 = next(write_rosbag2(folder / "rosbag2", n=60).glob("*.db3"))
    found = {
        "zstd.mcap": (zstd.read_bytes(), 120),
        "plain.mcap": (plain.read_bytes(), 120),
        "run.bag": (bag.read_bytes(), 60),
        "plain.bag": (_plain_bag(folder / "plain.bag", 60).read_bytes(), 60),
        "run.db3": (db3.read_bytes(), 60),
    }
    # unchunked, padded, statistics, summary without channels: the conformance variants
    for name in CONFORMANCE:
        path = REAL_LOGS / "conformance" / "TenMessages" / name
        if path.is_file():
            found[name] = (path.read_bytes(), 10)
    return found


@st.composite
def damage(draw, data: bytes) -> bytes:
    """`data` with one to four random changes."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "overwrite", "zero", "cut", "insert", "append"]))
        at = draw(st.integers(0, max(len(out) - 1, 0)))
        if kind == "flip" and out:
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif kind in ("overwrite", "zero"):
            n = draw(st.integers(1, 512))
            run = bytes(n) if kind == "zero" else draw(st.binary(min_size=n, max_size=n))
            out[at : at + n] = run[: len(out) - at]
        elif kind == "cut":
            del out[max(at, 1) :]
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:
            out += draw(st.binary(min_size=1, max_size=256))
    return bytes(out)


def ingest_bytes(name: str, data: bytes) -> FileResult:
    work = Path(tempfile.mkdtemp(prefix="flywheel-fuzz-"))
    try:
        (work / name).write_bytes(data)
        summary = ingest([work / name], Lake(work / "lake"))  # raises only on a bug
        (result,) = summary.results
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("name", NAMES)
def test_random_damage_never_crashes_hangs_or_invents_messages(logs, name):
    data, messages = logs[name]

    @FUZZ
    @given(damaged=damage(data))
    def check(damaged: bytes) -> None:
        result = ingest_bytes(name, damaged)
        assert result.status in ("ingested", "salvaged", "quarantined"), result
        assert "unexpected" not in (result.reason or ""), result.reason  # a bug's catch-all
        assert result.message_count <= messages
        if result.status == "ingested":
            assert result.complete and result.message_count == messages
        if result.status == "salvaged":
            assert not result.complete and result.reason
            assert result.expected_messages is None or result.expected_messages >= (
                result.message_count
            )

    check()
