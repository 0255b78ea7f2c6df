"""Shared fixtures: a clean environment, and real files on disk."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No test sees the developer's lake or settings."""
    for name in ("FLYWHEEL_LAKE", "FLYWHEEL_WORKERS", "FLYWHEEL_EMBEDDER"):
        monkeypatch.delenv(name, raising=False)
