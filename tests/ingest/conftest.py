"""Generated drive logs shared by the ingest tests (written once per session, read-only)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sim import generate

REAL_LOGS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real-logs"


@pytest.fixture(scope="session")
def drives(tmp_path_factory) -> Path:
    """Three generated logs of 40 s with planted events, and their truth.json."""
    out = tmp_path_factory.mktemp("drives")
    generate(out, logs=3, seconds=40.0, seed=11)
    return out


@pytest.fixture(scope="session")
def truth(drives) -> dict:
    return json.loads((drives / "truth.json").read_text())


@pytest.fixture
def drives_copy(drives, tmp_path) -> Path:
    """A private copy a test may add bad files to."""
    out = tmp_path / "drives"
    shutil.copytree(drives, out)
    return out
