"""The fault-injection suite: shared data, a process runner, and the summary table it prints.

Every test records each fault it injected with `faults.record(name, tries, lost)`; at the end of
the run pytest prints one table of faults tried and state lost (which must be zero).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from flywheel.lake import Lake
from sim import generate

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("driver.py")
_RESULTS: dict[str, list[int]] = defaultdict(lambda: [0, 0])


class Faults:
    def record(self, name: str, tries: int = 1, lost: int = 0) -> None:
        _RESULTS[name][0] += tries
        _RESULTS[name][1] += lost


@pytest.fixture
def faults() -> Faults:
    return Faults()


def pytest_terminal_summary(terminalreporter):
    if not _RESULTS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("faults tried")
    write(f"{'fault':58} {'tries':>6} {'state lost':>11}")
    for name, (tries, lost) in sorted(_RESULTS.items()):
        write(f"{name:58} {tries:>6} {lost:>11}")


@pytest.fixture(scope="session")
def drives(tmp_path_factory) -> Path:
    """Six generated logs of 30 s (and their truth.json)."""
    out = tmp_path_factory.mktemp("fault-drives")
    generate(out, logs=6, seconds=30.0, seed=21)
    return out


@pytest.fixture(scope="session")
def selection_lake(drives, tmp_path_factory) -> Path:
    """The six logs ingested, and every scene saved as selection `all` (tests copy it)."""
    import mining

    root = tmp_path_factory.mktemp("selection") / "lake"
    run("ingest", root, drives)
    miner = mining.open(root)
    miner.save("all", miner.sql("SELECT scene_id FROM scenes ORDER BY scene_id"))
    return root


def flywheel(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`flywheel ARGS…` in a fresh process (in `cwd`, where its flywheel.toml is), to the end."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )


def start(op: str, lake: Path, *args: str) -> subprocess.Popen:
    """Run the driver; returns once it has printed `started`."""
    process = subprocess.Popen(
        [sys.executable, str(DRIVER), op, str(lake), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    line = process.stdout.readline()
    assert line.strip() == "started", process.stderr.read()
    return process


def run(op: str, lake: Path, *args: str) -> float:
    """Run the driver to the end; the seconds its work took."""
    process = start(op, lake, *args)
    t = time.monotonic()
    assert process.wait(timeout=300) == 0, process.stderr.read()
    return time.monotonic() - t


class Reader(threading.Thread):
    """Reads the lake in a loop while a writer works (and dies): every read must succeed and
    every published log must show all of its scenes."""

    def __init__(self, lake: Path) -> None:
        super().__init__(daemon=True)
        self.lake, self.stop, self.errors, self.reads = lake, threading.Event(), [], 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                con = Lake(self.lake).connect()
                for table in ("logs", "scenes", "events", "selections", "tasks", "labels"):
                    con.execute(f"SELECT count(*) FROM {table}").fetchone()
                columns = {d[0] for d in con.execute("SELECT * FROM logs LIMIT 0").description}
                torn = 0
                if "n_scenes" in columns:  # the view saw at least one published log
                    torn = con.execute(
                        "SELECT count(*) FROM logs l WHERE n_scenes <> "
                        "(SELECT count(*) FROM scenes s WHERE s.log_id = l.log_id)"
                    ).fetchone()[0]
                if torn:
                    self.errors.append(f"{torn} logs published without all their scenes")
                self.reads += 1
            except Exception as error:  # any failure to read is the finding
                self.errors.append(repr(error))
            time.sleep(0.005)

    def __enter__(self) -> Reader:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join(timeout=10)
