"""A full disk during ingest, and two ingests of overlapping files at once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from flywheel.lake import Lake
from tests.faults.conftest import ROOT, Reader, flywheel, run
from tests.faults.test_kill import INGEST_TABLES, snapshot

STAMPS = ("ingested_at", "at")


@pytest.fixture
def small_disk(tmp_path):
    """A real filesystem that fills up: a tmpfs mount (needs root, which `make test` has)."""
    mount = tmp_path / "disk"
    mount.mkdir()

    def resize(size_kb: int) -> None:
        option = f"size={size_kb}k"
        if os.path.ismount(mount):
            option = "remount," + option
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", option, "tmpfs", str(mount)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")

    yield mount, resize
    if os.path.ismount(mount):
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_stops_ingest_clearly_and_half_writes_nothing(
    drives, tmp_path, small_disk, faults
):
    clean = tmp_path / "clean"
    run("ingest", clean, drives)
    expected = snapshot(clean, INGEST_TABLES, drop=STAMPS)
    need_kb = sum(p.stat().st_size for p in clean.rglob("*") if p.is_file()) // 1024
    mount, resize = small_disk
    resize(need_kb // 2)  # room for about half the lake
    lake = mount / "lake"
    with Reader(lake) as reader:
        result = flywheel("ingest", str(drives), "--lake", str(lake))
    assert result.returncode == 1, result.stderr
    assert "No space left on device" in result.stderr and "nothing was published" in result.stderr
    assert "Traceback" not in result.stderr
    assert reader.errors == []
    assert not [p for p in lake.rglob("*") if p.name.endswith(".tmp")]  # no half-written file
    published = Lake(lake).connect().execute("SELECT count(*) FROM logs").fetchone()[0]
    assert 0 <= published < 6
    # more room, the same command: the lake ends exactly as a clean run's
    resize(need_kb * 4)
    again = flywheel("ingest", str(drives), "--lake", str(lake))
    assert again.returncode == 0, again.stderr
    lost = snapshot(lake, INGEST_TABLES, drop=STAMPS) != expected
    faults.record("disk full during ingest, then room and a rerun", 1, int(lost))
    assert not lost


def test_two_ingests_of_overlapping_files_at_once(drives, tmp_path, faults):
    files = sorted(drives.glob("*.mcap"))
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, chosen in ((first, files[:4]), (second, files[2:])):
        folder.mkdir()
        for f in chosen:
            shutil.copy(f, folder / f.name)
    clean = tmp_path / "clean"
    run("ingest", clean, drives)
    expected = snapshot(clean, INGEST_TABLES, drop=STAMPS)
    lost = 0
    for attempt in range(3):
        lake = tmp_path / f"lake-{attempt}"
        args = ["ingest", "--lake", str(lake), "--workers", "2"]
        a = subprocess.Popen(
            [sys.executable, "-m", "cli", *args[:1], str(first), *args[1:]],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        b = subprocess.Popen(
            [sys.executable, "-m", "cli", *args[:1], str(second), *args[1:]],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert a.wait(timeout=300) == 0, a.stderr.read()
        assert b.wait(timeout=300) == 0, b.stderr.read()
        # the source paths differ, the content (and so every row) must not
        got = snapshot(lake, INGEST_TABLES, drop=(*STAMPS, "source_uri", "attrs"))
        lost += got != snapshot(clean, INGEST_TABLES, drop=(*STAMPS, "source_uri", "attrs"))
        assert Lake(lake).connect().execute("SELECT count(*) FROM logs").fetchone()[0] == 6
    assert expected  # the clean lake is not empty
    faults.record("two concurrent ingests of overlapping files", 3, lost)
    assert lost == 0
