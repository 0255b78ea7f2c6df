"""Special files and unreadable paths are skipped with a quarantine line; the run goes on.

A FIFO is never opened (opening one for reading waits for a writer forever), and a folder
that cannot be listed is reported instead of aborting the run with a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from flywheel.lake import Lake
from ingest import ingest
from sim import generate

from .test_readers import write_rosbag2


@pytest.fixture
def inputs(tmp_path) -> Path:
    """A folder with one good log, to which a test adds a special file."""
    folder = tmp_path / "in"
    generate(folder, logs=1, seconds=10, seed=4)
    return folder


def quarantined(lake: Lake) -> dict[str, str]:
    rows = lake.connect().execute("SELECT source_uri, reason FROM quarantine").fetchall()
    return {uri.rsplit("/", 1)[-1]: reason for uri, reason in rows}


@pytest.mark.timeout(60)
def test_a_fifo_in_an_input_folder_is_skipped_not_opened(inputs, tmp_path):
    os.mkfifo(inputs / "live.mcap")
    lake = Lake(tmp_path / "lake")
    summary = ingest([inputs], lake)
    status = {r.source_uri.rsplit("/", 1)[-1]: r.status for r in summary.results}
    assert status == {"drive_0000.mcap": "ingested", "live.mcap": "quarantined"}
    assert summary.exit_code == 1
    assert "FIFO" in quarantined(lake)["live.mcap"]


@pytest.mark.timeout(60)
def test_a_fifo_named_on_the_command_line_is_skipped(inputs, tmp_path):
    os.mkfifo(tmp_path / "pipe.bag")
    lake = Lake(tmp_path / "lake")
    summary = ingest([tmp_path / "pipe.bag", inputs / "drive_0000.mcap"], lake)
    assert [r.status for r in summary.results] == ["ingested", "quarantined"]
    assert "FIFO" in quarantined(lake)["pipe.bag"]


@pytest.mark.timeout(60)
def test_a_fifo_inside_a_rosbag2_folder_does_not_block_it(tmp_path):
    folder = write_rosbag2(tmp_path / "bag", n=10)
    os.mkfifo(folder / "extra.db3")  # not listed in metadata.yaml
    summary = ingest([folder], Lake(tmp_path / "lake"))
    assert summary.exit_code == 0 and summary.results[0].message_count == 10


def test_devices_sockets_and_dangling_links_are_skipped(inputs, tmp_path):
    (inputs / "null.mcap").symlink_to("/dev/null")
    (inputs / "gone.db3").symlink_to(tmp_path / "nowhere.db3")
    server = socket.socket(socket.AF_UNIX)
    sock = tmp_path / "s" / "recorder.bag"  # a short path: AF_UNIX paths are limited
    sock.parent.mkdir()
    try:
        server.bind(str(sock))
    except OSError:
        pytest.skip("cannot bind a unix socket here")
    shutil.move(str(sock), inputs / "recorder.bag")
    lake = Lake(tmp_path / "lake")
    try:
        summary = ingest([inputs], lake)
    finally:
        server.close()
    reasons = quarantined(lake)
    assert "device" in reasons["null.mcap"]
    assert "socket" in reasons["recorder.bag"]
    assert "symbolic link" in reasons["gone.db3"]
    assert summary.count("ingested") == 1 and summary.exit_code == 1


INGEST = (
    "import json, sys\n"
    "from ingest import ingest\n"
    "summary = ingest(sys.argv[1:-1], sys.argv[-1])\n"
    "print(json.dumps(summary.as_dict()))\n"
    "sys.exit(summary.exit_code)\n"
)


def run_unprivileged(args: list[str]) -> subprocess.CompletedProcess:
    """Run the ingest as a user without root's power to read anything.

    Root reads every file whatever its mode, so as root the ingest runs in a user namespace
    mapped to an ordinary uid (files owned by root then belong to it, with no capabilities).
    """
    command = [sys.executable, "-c", INGEST, *args]
    if os.geteuid() == 0:
        if shutil.which("unshare") is None:
            pytest.skip("running as root and no unshare(1) to drop root's read-anything power")
        command = ["unshare", "-U", "--map-user=65534", "--map-group=65534", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode not in (0, 1) or not done.stdout:
        pytest.skip(f"cannot run without root's privileges here: {done.stderr.strip()[:200]}")
    return done


def test_an_unreadable_folder_and_file_are_reported_and_the_run_goes_on(inputs, tmp_path):
    locked = inputs / "locked"
    generate(locked, logs=1, seconds=10, seed=5)
    secret = inputs / "secret.mcap"
    shutil.copy(inputs / "drive_0000.mcap", secret)
    with open(secret, "ab") as f:
        f.write(b"x")  # other bytes, so it is not the same log as drive_0000
    locked.chmod(0o000)
    secret.chmod(0o000)
    try:
        done = run_unprivileged([str(inputs), str(tmp_path / "lake")])
    finally:
        locked.chmod(0o755)
        secret.chmod(0o644)
    assert "Traceback" not in done.stderr
    summary = json.loads(done.stdout)
    status = {Path(r["source_uri"]).name: (r["status"], r["reason"]) for r in summary["results"]}
    assert status["drive_0000.mcap"] == ("ingested", None)
    assert status["locked"][0] == "quarantined" and "cannot be read" in status["locked"][1]
    assert status["secret.mcap"][0] == "quarantined" and "ermission" in status["secret.mcap"][1]
    assert done.returncode == 1
