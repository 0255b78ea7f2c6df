"""Sources are read, never changed: after an ingest every source tree lists the same files with
the same bytes (no -wal, -shm, journal or lock beside them), and read-only sources ingest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from flywheel.lake import Lake
from ingest import ingest
from sim import generate

from .conftest import REAL_LOGS
from .test_readers import write_ros1_bag, write_rosbag2


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under `root` (hidden ones too): type, mode, size, mtime and sha256."""
    out = {}
    for path in sorted([root, *root.rglob("*")]):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        out[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out


def wal_db3(folder: Path, n: int = 50) -> Path:
    """A .db3 in WAL mode whose rows are still in its -wal file (a recorder that was killed)."""
    source = next(write_rosbag2(folder.parent / "wal-source", n=n).glob("*.db3"))
    folder.mkdir()
    con = sqlite3.connect(source)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA wal_autocheckpoint=0")
    rows = con.execute("SELECT topic_id, timestamp, data FROM messages").fetchall()
    con.executemany(
        "INSERT INTO messages (topic_id, timestamp, data) VALUES (?, ?, ?)",
        [(tid, t + 10**12, data) for tid, t, data in rows],
    )
    con.commit()
    for suffix in ("", "-wal"):  # copied while open: the new rows are only in the -wal
        shutil.copyfile(f"{source}{suffix}", folder / f"wal.db3{suffix}")
    con.close()
    return folder / "wal.db3"


@pytest.fixture
def sources(tmp_path) -> dict[str, tuple[Path, int]]:
    """One source of every container: (path to ingest, messages it holds)."""
    root = tmp_path / "sources"
    (mcap,) = generate(root / "mcap", logs=1, seconds=10, seed=2)
    (root / "bag").mkdir()
    bag = write_ros1_bag(root / "bag" / "run.bag", n=50)
    folder = write_rosbag2(root / "rosbag2" / "bag", n=20)
    db3_dir = root / "db3"
    db3_dir.mkdir()
    db3 = shutil.copy(next(folder.glob("*.db3")), db3_dir / "bare.db3")
    found = {
        "mcap": (mcap, 210),
        "bag": (bag, 50),
        "db3": (Path(db3), 20),
        "rosbag2 folder": (folder, 20),
        "db3 with a -wal": (wal_db3(root / "wal"), 100),
    }
    if REAL_LOGS.is_dir():
        for name in ("rosbag2_talker_sqlite3", "rosbag2_wbag_mcap"):
            shutil.copytree(REAL_LOGS / name, root / name)
        found["real sqlite3 folder"] = (root / "rosbag2_talker_sqlite3", 20)
        found["real split mcap folder"] = (root / "rosbag2_wbag_mcap", 6074)
    return found


def test_every_container_leaves_its_source_tree_as_it_was(sources, tmp_path):
    for kind, (path, messages) in sources.items():
        root = path if path.is_dir() else path.parent
        before = snapshot(root)
        summary = ingest([path], Lake(tmp_path / "lake" / kind.replace(" ", "-")))
        assert summary.exit_code == 0, (kind, summary.results)
        assert summary.results[0].message_count == messages, kind
        assert snapshot(root) == before, kind


def test_a_db3_in_a_read_only_folder_ingests(sources, tmp_path):
    # root ignores 0555, but sqlite still must not try to create -shm or a journal there
    for kind in ("db3", "rosbag2 folder", "db3 with a -wal"):
        path = sources[kind][0]
        folder = path if path.is_dir() else path.parent
        before = snapshot(folder)
        folder.chmod(0o555)
        try:
            summary = ingest([path], Lake(tmp_path / "lake" / kind.replace(" ", "-")))
        finally:
            folder.chmod(0o755)
        assert summary.exit_code == 0 and summary.results[0].complete, summary.results
        assert snapshot(folder) == before


INGEST = (
    "import json, sys\n"
    "from ingest import ingest\n"
    "summary = ingest(sys.argv[1:-1], sys.argv[-1])\n"
    "print(json.dumps(summary.as_dict()))\n"
    "sys.exit(summary.exit_code)\n"
)


def test_sources_on_a_read_only_mount_ingest(sources, tmp_path):
    """A real read-only mount (a bind mount remounted ro in a user namespace)."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) to make a read-only mount")
    root = tmp_path / "sources"
    mount = tmp_path / "mnt"
    mount.mkdir()
    before = snapshot(root)
    paths = [str(mount / p.relative_to(root)) for p, _ in sources.values()]
    script = 'mount --bind "$1" "$2" && mount -o remount,ro,bind "$2" && shift 2 && exec "$@"'
    command = ["unshare", "-rm", "sh", "-c", script, "sh", str(root), str(mount)]
    command += [sys.executable, "-c", INGEST, *paths, str(tmp_path / "lake")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and not done.stdout:
        pytest.skip(f"cannot make a read-only mount here: {done.stderr.strip()[:200]}")
    summary = json.loads(done.stdout)
    assert done.returncode == 0, [(r["source_uri"], r["reason"]) for r in summary["results"]]
    assert summary["ingested"] == len(sources)
    assert summary["messages"] == sum(n for _, n in sources.values())
    assert snapshot(root) == before


def test_a_db3_rows_still_in_its_wal_land(sources, tmp_path):
    path, messages = sources["db3 with a -wal"]
    summary = ingest([path], Lake(tmp_path / "lake"))
    assert (summary.exit_code, summary.results[0].message_count) == (0, messages)
    assert not [p for p in Path(path).parent.iterdir() if p.name.endswith("-shm")]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_the_readers_open_nothing_for_writing(sources, tmp_path, monkeypatch):
    """Belt and braces: every open() of a source during ingest is read-only."""
    roots = [str(p if p.is_dir() else p.parent) for p, _ in sources.values()]
    real_open = os.open
    writes: list[str] = []

    def watched(path, flags, *args, **kwargs):
        if any(str(path).startswith(r) for r in roots) and flags & (
            os.O_WRONLY | os.O_RDWR | os.O_CREAT
        ):
            writes.append(str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", watched)
    ingest([p for p, _ in sources.values()], Lake(tmp_path / "lake"))
    assert writes == []
