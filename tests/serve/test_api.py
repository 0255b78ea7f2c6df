"""The actions over plain HTTP: the token, JSON answers, idempotence, acknowledgements."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import labeling

from .conftest import SLA, TOKEN, late_vendor, stage_events, vendor_tasks

ROOT = Path(__file__).resolve().parents[2]


def state(world, batch_id: str) -> str:
    return labeling.status(world.lake, batch_id)["state"].iloc[0]


def test_actions_without_the_right_token_get_401_json_and_change_nothing(world):
    batch = world.pending[0]
    alert = "sla%3Asimulated"
    before = vendor_tasks(world.lake)
    for token in (None, "", "wrong", TOKEN + "x", TOKEN[:-1]):
        for path in (f"/api/batches/{batch}/approve", f"/api/batches/{batch}/reject",
                     f"/api/alerts/{alert}/ack"):  # fmt: skip
            answer = world.post(path, token=token)
            assert answer.status_code == 401, (path, token)
            assert answer.headers["content-type"].startswith("application/json")
            assert "error" in answer.json()
    answer = world.post(f"/api/batches/{batch}/approve", token=None, Authorization=TOKEN)
    assert answer.status_code == 401  # no "Bearer"
    assert state(world, batch) == "pending_approval"
    assert vendor_tasks(world.lake) == before
    assert stage_events(world.lake, "approved") == []
    assert stage_events(world.lake, "rejected") == []
    assert stage_events(world.lake, "acknowledged") == []
    assert "sla:simulated" in [a["id"] for a in world.report()["alerts"]]


def test_unknown_batches_alerts_and_routes_answer_json(world):
    for path in ("/api/batches/nope-12345678/approve", "/api/batches/nope/reject",
                 "/api/batches/..%2F..%2Fetc/approve", "/api/alerts/stuck%3Atrained/ack",
                 "/api/alerts/bogus/ack", "/api/nothing-here"):  # fmt: skip
        answer = world.post(path)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"].startswith("application/json")
        assert "error" in answer.json()
    answer = world.get(f"/api/batches/{world.pending[0]}/approve")  # a GET is not an action
    assert answer.status_code in (404, 405)
    assert "error" in answer.json()
    assert state(world, world.pending[0]) == "pending_approval"


def test_approve_sends_once_and_a_repeat_answers_the_same(world):
    batch = world.pending[0]
    before = vendor_tasks(world.lake)
    first = world.post(f"/api/batches/{batch}/approve", **{"X-Flywheel-User": "ana"})
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "submitted" and first.json()["batch_id"] == batch
    assert vendor_tasks(world.lake) == before + 2
    again = world.post(f"/api/batches/{batch}/approve", **{"X-Flywheel-User": "bo"})
    assert (again.status_code, again.json()) == (200, first.json())
    assert vendor_tasks(world.lake) == before + 2
    assert stage_events(world.lake, "approved") == [(batch, {"by": "ana", "via": "serve"})]
    # a submitted batch cannot be rejected any more
    late = world.post(f"/api/batches/{batch}/reject")
    assert late.status_code == 409 and late.json()["state"] == "submitted"


def test_reject_sends_nothing_and_frees_the_scenes(world):
    batch = world.pending[1]
    before = vendor_tasks(world.lake)
    first = world.post(f"/api/batches/{batch}/reject")
    assert first.status_code == 200 and first.json()["state"] == "rejected"
    again = world.post(f"/api/batches/{batch}/reject")
    assert (again.status_code, again.json()) == (200, first.json())
    assert stage_events(world.lake, "rejected") == [(batch, {"by": "serve", "via": "serve"})]
    approve = world.post(f"/api/batches/{batch}/approve")
    assert approve.status_code == 409 and approve.json()["state"] == "rejected"
    assert vendor_tasks(world.lake) == before
    assert stage_events(world.lake, "approved") == []
    # its scenes may be submitted again: a new batch, sent this time
    summary = labeling.submit(world.lake, "p2", late_vendor(world.lake))
    assert summary.skipped == 0 and [b.state for b in summary.batches] == ["submitted"]
    assert summary.batches[0].batch_id != batch
    assert vendor_tasks(world.lake) == before + 2


def test_ack_hides_the_alert_until_its_entities_change(world):
    alert = "sla:simulated"
    assert alert in [a["id"] for a in world.report()["alerts"]]
    first = world.post("/api/alerts/sla%3Asimulated/ack", **{"X-Flywheel-User": "chen"})
    assert first.status_code == 200, first.text
    assert first.json()["id"] == alert and first.json()["by"] == "chen"
    again = world.post("/api/alerts/sla%3Asimulated/ack")
    assert (again.status_code, again.json()) == (200, first.json())
    (event,) = stage_events(world.lake, "acknowledged")
    assert event[0] == alert and event[1]["by"] == "chen" and event[1]["via"] == "serve"
    assert event[1]["entities"] == 2 and len(event[1]["digest"]) == 64
    report = world.report()
    assert alert not in [a["id"] for a in report["alerts"]]
    assert [(a["id"], a["by"], a["at"]) for a in report["acknowledged"]] == [
        (alert, "chen", first.json()["at"])
    ]
    # one more late task: reject p1, submit its scenes again to the 1 s SLA vendor
    assert world.post(f"/api/batches/{world.pending[0]}/reject").status_code == 200
    labeling.submit(world.lake, "p1", late_vendor(world.lake))
    time.sleep(SLA.total_seconds() + 0.2)
    report = world.report()
    assert alert in [a["id"] for a in report["alerts"]]
    assert report["acknowledged"] == []
    # the command line's JSON says the same
    out = subprocess.run(
        [sys.executable, "-m", "cli", "report", "--format", "json", "--lake", str(world.lake.root)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    import json

    data = json.loads(out.stdout)
    assert alert in [a["id"] for a in data["alerts"]] and data["acknowledged"] == []
