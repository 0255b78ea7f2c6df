"""Helpers the test packages share for lakes built once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

from flywheel.lake import Lake


def private_copy(lake: Path, target: Path) -> Lake:
    """A copy of a session lake that one test may change (no index, no locks)."""
    shutil.copytree(lake, target, ignore=shutil.ignore_patterns("_index", "_locks"))
    return Lake(target)
