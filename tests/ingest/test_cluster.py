"""Ingest on a real Dask cluster: a scheduler and two workers as separate processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flywheel.lake import Lake
from ingest import ingest

from .test_crash import snapshot

DASK = Path(sys.executable).with_name("dask")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    common = {
        "cwd": tmp_path,
        "env": env,
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
    }
    processes = [
        subprocess.Popen(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            **common,
        )
    ]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    for _ in range(2):
        processes.append(
            subprocess.Popen(
                [
                    str(DASK),
                    "worker",
                    address,
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--local-directory",
                    str(tmp_path),
                ],
                **common,
            )
        )
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(2, timeout=60)
    yield address
    for process in reversed(processes):
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


def test_ingest_on_a_cluster_gives_the_rows_of_a_local_ingest(drives, cluster, tmp_path):
    local, remote = Lake(tmp_path / "local"), Lake(tmp_path / "remote")
    ingest([drives], local)
    summary = ingest([drives], remote, scheduler=cluster)
    assert summary.exit_code == 0
    assert summary.count("ingested") == 3
    assert snapshot(local) == snapshot(remote)


def test_an_unreachable_scheduler_is_a_clear_error(drives, tmp_path):
    from flywheel.errors import FlywheelError

    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(FlywheelError, match="cannot reach the Dask scheduler"):
        ingest([drives], Lake(tmp_path / "lake"), scheduler=address)


def test_index_built_on_a_cluster_worker(drives, cluster, tmp_path):
    import json

    from click.testing import CliRunner

    import mining
    from cli import cli

    lake = Lake(tmp_path / "lake")
    ingest([drives], lake)
    result = CliRunner().invoke(
        cli,
        [
            "index",
            "--lake",
            str(lake.root),
            "--kind",
            "hnsw",
            "--shard-size",
            "10",
            "--scheduler",
            cluster,
            "--format",
            "json",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    scenes = lake.connect().execute("SELECT count(*) FROM scenes").fetchone()[0]
    assert manifest["kind"] == "hnsw" and manifest["count"] == scenes > 0
    assert len(manifest["shards"]) == -(-scenes // 10)  # one task per shard
    loaded = mining.load_index(lake)  # published in the lake by the worker
    assert loaded.manifest["built_at"] == manifest["built_at"]
    miner = mining.open(lake)
    seed = miner.sql("SELECT scene_id FROM scenes ORDER BY scene_id").scene_id[0]
    assert miner.similar(seed, k=3)["scene_id"].tolist()  # searches the worker's index
