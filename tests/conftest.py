"""Shared fixtures: a clean environment, and real files on disk."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No test sees the developer's lake or settings."""
    for name in ("FLYWHEEL_LAKE", "FLYWHEEL_WORKERS", "FLYWHEEL_EMBEDDER"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """A real Label Studio on loopback for the session, shared by the labeling and fault tests
    (see tests/labeling/label_studio_server.py).

    Skipped with the reason when it cannot be installed (no network), unless $CI is set: in CI
    that is a failure.
    """
    from tests.labeling.label_studio_server import LabelStudioServer, SetupError, ensure_venv

    try:
        exe = ensure_venv()
    except SetupError as error:
        if os.environ.get("CI"):
            pytest.fail(f"Label Studio is required in CI: {error}")
        pytest.skip(f"Label Studio is not installed and could not be ({error})")
    server = LabelStudioServer(tmp_path_factory.mktemp("label-studio"), exe)
    server.start()
    try:
        yield server
    finally:
        server.stop()
