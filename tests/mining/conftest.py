"""A generated, ingested lake shared by the mining tests (built once per session, read-only).

Tests that write (index builds, selections, extra logs) work on `lake_copy`, a private copy.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flywheel.lake import Lake
from ingest import ingest
from sim import generate

from ..lakes import private_copy

LOGS, SECONDS, SEED = 6, 120.0, 5


@pytest.fixture(scope="session")
def drives(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mining-drives")
    generate(out, logs=LOGS + 1, seconds=SECONDS, seed=SEED)
    return out


@pytest.fixture(scope="session")
def truth(drives) -> dict:
    return json.loads((drives / "truth.json").read_text())


@pytest.fixture(scope="session")
def base_lake(drives, tmp_path_factory) -> Path:
    """The first LOGS logs ingested; the last generated log is kept back for 'late' tests."""
    root = tmp_path_factory.mktemp("mining-lake") / "lake"
    paths = sorted(drives.glob("*.mcap"))[:LOGS]
    assert ingest(paths, root).exit_code == 0
    return root


@pytest.fixture(scope="session")
def late_log(drives) -> Path:
    return sorted(drives.glob("*.mcap"))[LOGS]


@pytest.fixture
def lake_copy(base_lake, tmp_path) -> Lake:
    return private_copy(base_lake, tmp_path / "lake")
