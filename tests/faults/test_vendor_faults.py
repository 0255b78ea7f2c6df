"""A vendor's bad day: 500s, 429 with Retry-After, timeouts and malformed JSON, injected by a
proxy in front of the real Label Studio (the `label_studio` fixture).

After each fault the work is rerun until it completes; then Label Studio must hold every scene
of the selection exactly once and the lake every label that was made: nothing lost, nothing
paid for twice.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

import labeling
import mining
from flywheel.errors import VendorError
from labeling import Retry
from labeling.vendors.label_studio import LabelStudioVendor

HOP = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length"}


class FaultProxy(ThreadingHTTPServer):
    """Forwards to `upstream`, except where a queued fault matches the request first.

    Faults: ``("500", pattern)``, ``("429", pattern, seconds)``, ``("slow", pattern, seconds)``
    (forwards, then answers late: the vendor did the work), ``("malformed", pattern)``
    (forwards, then answers 200 with a body that is not JSON). Each fires once.
    """

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream
        self.faults: list[tuple] = []
        self.fired: list[str] = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def take(self, method: str, path: str) -> tuple | None:
        with self.lock:
            for fault in self.faults:
                if re.search(fault[1], f"{method} {path}"):
                    self.faults.remove(fault)
                    self.fired.append(fault[0])
                    return fault
        return None


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet
        pass

    def _any(self) -> None:
        server: FaultProxy = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fault = server.take(self.command, self.path)
        if fault and fault[0] == "500":
            return self._answer(500, b'{"detail": "injected"}')
        if fault and fault[0] == "429":
            return self._answer(429, b'{"detail": "slow down"}', {"Retry-After": str(fault[2])})
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP | {"host"}}
        upstream = requests.request(
            self.command, server.upstream + self.path, data=body, headers=headers, timeout=60
        )
        if fault and fault[0] == "slow":
            time.sleep(fault[2])  # the vendor did the work; the client gave up waiting
        if fault and fault[0] == "malformed":
            return self._answer(200, b'{"tasks": [ {"id": 1,')
        extra = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP}
        self._answer(upstream.status_code, upstream.content, extra)

    def _answer(self, status: int, body: bytes, headers: dict | None = None) -> None:
        try:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out first

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any


@pytest.fixture
def setup(label_studio, selection_lake, tmp_path):
    """A private lake, a proxy in front of Label Studio and a vendor (own project) behind it."""
    lake = tmp_path / "lake"
    shutil.copytree(selection_lake, lake)
    proxy = FaultProxy(label_studio.url)
    vendor = LabelStudioVendor(
        proxy.url, label_studio.token, project_title=f"faults {uuid.uuid4().hex[:8]}", timeout=2.0
    )
    direct = LabelStudioVendor(
        label_studio.url, label_studio.token, project_title=vendor.project_title
    )
    yield lake, proxy, vendor, direct
    proxy.shutdown()
    proxy.server_close()


def at_vendor(direct: LabelStudioVendor) -> list[str]:
    """Every task key Label Studio holds for the project (straight to the server)."""
    return sorted(u.key for u in direct.changes(None)[0])


def scenes(lake: Path) -> int:
    return len(mining.open(lake).selection("all"))


def submit_until_done(lake, vendor, retry, limit: int = 4) -> list[str]:
    """Submit, and rerun after a failure the way a person would; the errors seen."""
    errors = []
    for _ in range(limit):
        try:
            labeling.submit(lake, "all", vendor, batch_size=5, retry=retry)
            return errors
        except VendorError as error:
            errors.append(str(error))
    raise AssertionError(f"submit never completed: {errors}")


RETRY = Retry(attempts=4, base_s=0.05, max_s=0.5)
IMPORT = r"POST /api/projects/\d+/import"


@pytest.mark.parametrize(
    "injected, name",
    [
        ([("500", IMPORT), ("500", IMPORT)], "vendor answers 500 (twice) on import"),
        ([("429", IMPORT, 1)], "vendor answers 429 with Retry-After: 1"),
        ([("slow", IMPORT, 3)], "vendor times out after accepting an import"),
        ([("500", IMPORT)] * 6, "vendor answers 500 until retries run out"),
        ([("malformed", IMPORT)], "vendor returns malformed JSON on import"),
    ],
    ids=["500", "429", "timeout-after-accept", "outage", "malformed"],
)
def test_submit_survives_the_vendor(setup, injected, name, faults):
    lake, proxy, vendor, direct = setup
    proxy.faults = list(injected)
    sleeps: list[float] = []
    retry = Retry(
        attempts=4, base_s=0.05, max_s=0.5, sleep=lambda s: (sleeps.append(s), time.sleep(s))
    )
    errors = submit_until_done(lake, vendor, retry)
    assert proxy.fired, "the fault never fired"
    keys = at_vendor(direct)
    lost = int(len(keys) != scenes(lake) or len(set(keys)) != len(keys))
    faults.record(name, 1, lost)
    assert len(keys) == len(set(keys)) == scenes(lake)  # every scene once: none twice
    if injected[0][0] == "429":
        assert max(sleeps) >= 1.0  # Retry-After honoured
    if name.endswith("run out") or injected[0][0] == "malformed":
        # the command stopped with a clear message naming the vendor URL, never the key
        assert errors and proxy.url in errors[0]
        assert all(direct.api._key not in e for e in errors)
    else:
        assert errors == []  # retried inside the same run


def test_sync_survives_malformed_json_and_timeouts(setup, label_studio, faults):
    lake, proxy, vendor, direct = setup
    labeling.submit(lake, "all", vendor, batch_size=5, retry=RETRY)
    tasks = direct.changes(None)[0]
    for update in tasks[:3]:  # three annotations, as an annotator would
        requests.post(
            f"{label_studio.url}/api/tasks/{update.external_id}/annotations/",
            json={
                "result": [
                    {
                        "from_name": "scenario",
                        "to_name": "scene",
                        "type": "choices",
                        "value": {"choices": ["other"]},
                    }
                ]
            },
            headers={"Authorization": f"Token {label_studio.token}"},
            timeout=30,
        ).raise_for_status()
    proxy.faults = [("malformed", r"GET /api/tasks"), ("slow", r"GET /api/tasks", 3)]
    failures = 0
    for _ in range(4):
        try:
            labeling.sync(lake, vendor, retry=RETRY)
            break
        except VendorError as error:
            failures += 1
            assert proxy.url in str(error)
    assert failures >= 1 and "malformed" in proxy.fired
    con = labeling.status(lake)
    labels = mining.open(lake).sql("SELECT count(*) AS n FROM labels")["n"][0]
    lost = int(labels != 3 or con["tasks"].sum() != scenes(lake))
    faults.record("vendor returns malformed JSON / times out during sync", 1, lost)
    assert labels == 3 and con["tasks"].sum() == scenes(lake)
