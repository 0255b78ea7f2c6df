"""A real server over a small real lake: 1 generated log x 60 s (6 scenes), ingested, with
selections `brakes` (every scene), `late` (2 scenes, submitted to a simulated vendor with a
1 s SLA, so an `sla:simulated` alert is up), `p1` and `p2` (2 other scenes each, each one batch
waiting for approval). Each test gets its own copy and its own uvicorn server on a free
loopback port."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

import labeling
import mining
from flywheel.config import load_config
from flywheel.lake import Lake
from ingest import ingest
from labeling import SimulatedVendor
from labeling.vendors.simulated import state_dir
from serve.app import bind, create_app, server, url_of
from sim import generate

from ..lakes import private_copy

TOKEN = "test-token-0123456789"
SLA = dt.timedelta(seconds=1)


def late_vendor(lake: Lake) -> SimulatedVendor:
    return SimulatedVendor.for_lake(lake.root, price_per_task=0.5, sla=SLA)


@pytest.fixture(scope="session")
def base_lake(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("serve")
    generate(folder / "drives", logs=1, seconds=60, seed=7)
    root = folder / "lake"
    assert ingest(sorted((folder / "drives").glob("*.mcap")), root).exit_code == 0
    m = mining.open(root)
    scenes = m.sql("SELECT scene_id, -min_accel AS score FROM scenes ORDER BY scene_id")
    assert len(scenes) == 6
    m.save("brakes", scenes)
    for i, name in enumerate(("late", "p1", "p2")):
        m.save(name, scenes.iloc[2 * i : 2 * i + 2])
    return root


def vendor_tasks(lake: Lake) -> int:
    """How many tasks the simulated vendor holds (every accepted submit, all processes)."""
    folder = state_dir(lake.root) / "tasks"
    return sum(
        1 for p in folder.glob("*.jsonl") for line in p.read_text().splitlines() if line.strip()
    )


def stage_events(lake: Lake, stage: str) -> list[tuple[str, dict]]:
    rows = lake.connect().execute(
        'SELECT entity_id, attrs FROM events WHERE stage = ? ORDER BY "at"', [stage]
    )
    return [(e, json.loads(a)) for e, a in rows.fetchall()]


@dataclass
class World:
    lake: Lake
    url: str
    pending: list[str]  # batch ids waiting for approval: p1's, p2's

    def post(self, path: str, token: str | None = TOKEN, **headers: str) -> requests.Response:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.post(self.url.rstrip("/") + path, headers=headers, timeout=60)

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url.rstrip("/") + path, timeout=60)

    def report(self) -> dict:
        import metrics

        return metrics.contract_json(metrics.build(self.lake))


@pytest.fixture
def world(base_lake, tmp_path, monkeypatch) -> World:
    for name in ("FLYWHEEL_LAKE", "FLYWHEEL_SERVE_TOKEN", "FLYWHEEL_USER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    lake = private_copy(base_lake, tmp_path / "lake")
    vendor = late_vendor(lake)
    labeling.submit(lake, "late", vendor)
    pending = [
        labeling.submit(lake, name, vendor, approval_threshold=0.6).pending_approval[0]
        for name in ("p1", "p2")
    ]
    time.sleep(SLA.total_seconds() + 0.2)  # late's tasks now open past their SLA
    sock = bind("127.0.0.1", 0)
    uv = server(create_app(lake, TOKEN, load_config(), allowed_hosts=("127.0.0.1",)))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = url_of(sock)
    for _ in range(100):
        if uv.started:
            break
        time.sleep(0.05)
    try:
        yield World(lake, url, pending)
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        sock.close()
