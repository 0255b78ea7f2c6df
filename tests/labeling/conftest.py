"""A small real lake (2 generated logs x 60 s, ingested, one saved selection) per session;
each test works on its own copy, with a simulated vendor whose clock the test controls."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

import mining
from flywheel.lake import Lake
from ingest import ingest
from labeling import Retry, SimulatedVendor
from sim import generate

from ..lakes import private_copy

START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: dt.datetime = START) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


def selection_lake(folder: Path, logs: int, seed: int) -> Path:
    """Generated logs of 60 s, ingested, with every scene saved as selection "brakes"."""
    drives = folder / "drives"
    generate(drives, logs=logs, seconds=60, seed=seed)
    root = folder / "lake"
    assert ingest(sorted(drives.glob("*.mcap")), root).exit_code == 0
    m = mining.open(root)
    m.save("brakes", m.sql("SELECT scene_id, -min_accel AS score FROM scenes ORDER BY scene_id"))
    return root


@pytest.fixture(scope="session")
def base_lake(tmp_path_factory) -> Path:
    return selection_lake(tmp_path_factory.mktemp("labeling"), logs=2, seed=3)


@pytest.fixture
def lake(base_lake, tmp_path) -> Lake:
    return private_copy(base_lake, tmp_path / "lake")


@pytest.fixture(scope="session")
def small_lake(tmp_path_factory) -> Path:
    """1 generated log x 60 s, ingested, with selection "brakes" (the Label Studio tests')."""
    return selection_lake(tmp_path_factory.mktemp("ls"), logs=1, seed=5)


@pytest.fixture
def ls_lake(small_lake, tmp_path) -> Lake:
    return private_copy(small_lake, tmp_path / "lake")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def vendor(lake, clock) -> SimulatedVendor:
    return SimulatedVendor.for_lake(lake.root, now=clock, price_per_task=0.5, chunk_size=4)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def retry(sleeps) -> Retry:
    """Retries that record their delays instead of sleeping."""
    return Retry(attempts=4, base_s=1.0, max_s=8.0, sleep=sleeps.append, jitter=lambda: 1.0)
