"""The Label Studio adapter against a real Label Studio (the `label_studio` fixture), through
`labeling.submit` / `labeling.sync`, plus its error mapping against tiny fake servers."""

from __future__ import annotations

import http.server
import json
import threading
import uuid

import pytest
import requests

import labeling
from flywheel.config import LabelingConfig
from flywheel.errors import ConfigError, TransientError, VendorError
from flywheel.lake import Lake
from labeling import Retry
from labeling.vendors import open_vendor
from labeling.vendors.label_studio import LabelStudioVendor, label_config

from .label_studio_server import free_port

NO_WAIT = Retry(attempts=3, base_s=0.0, max_s=0.0, sleep=lambda s: None)


@pytest.fixture
def vendor(label_studio) -> LabelStudioVendor:
    """The adapter on a project of its own (one per test, on the session's server)."""
    return LabelStudioVendor(
        label_studio.url,
        label_studio.token,
        project_title=f"flywheel test {uuid.uuid4().hex[:8]}",
        chunk_size=3,
        timeout=30,
    )


def api(server, method: str, path: str, **kwargs):
    headers = {"Authorization": f"Token {server.token}"}
    response = requests.request(method, server.url + path, headers=headers, timeout=30, **kwargs)
    assert response.status_code < 300, response.text[:300]
    return response.json()


def vendor_tasks(server, vendor: LabelStudioVendor) -> list[dict]:
    body = api(
        server,
        "GET",
        "/api/tasks",
        params={"project": vendor.ensure_project(), "page_size": 1000, "include": "id,data"},
    )
    return body["tasks"]


def annotate(server, task_id: int, choice: str) -> None:
    """What an annotator's submit does: one annotation on the task."""
    result = [
        {
            "from_name": "scenario",
            "to_name": "description",
            "type": "choices",
            "value": {"choices": [choice]},
        },
        {
            "from_name": "note",
            "to_name": "description",
            "type": "textarea",
            "value": {"text": ["seen on the video"]},
        },
    ]
    api(
        server,
        "POST",
        f"/api/tasks/{task_id}/annotations/",
        json={"result": result, "lead_time": 4},
    )


def count(lake: Lake, sql: str) -> int:
    return lake.connect().execute(sql).fetchone()[0]


def test_submit_annotate_sync_and_resubmit_without_duplicates(ls_lake, vendor, label_studio):
    scenes = count(ls_lake, "SELECT count(*) FROM scenes")
    first = labeling.submit(ls_lake, "brakes", vendor, batch_size=4, retry=NO_WAIT)
    assert sum(b.submitted for b in first.batches) == scenes > 3  # chunks of 3: several imports

    tasks = vendor_tasks(label_studio, vendor)
    outbox = labeling.batches(ls_lake)
    assert len(tasks) == scenes
    assert {(t["data"]["batch_id"], t["data"]["scene_id"]) for t in tasks} == set(
        zip(outbox["batch_id"], outbox["scene_id"], strict=True)
    )
    assert {str(t["id"]) for t in tasks} == set(outbox["external_id"])
    assert all(t["data"]["description"] and "log_id" in t["data"] for t in tasks)

    done = sorted(tasks, key=lambda t: t["id"])[:3]
    for task in done:
        annotate(label_studio, task["id"], "hard_brake")
    synced = labeling.sync(ls_lake, vendor, retry=NO_WAIT)
    assert synced.labeled == 3 and synced.unknown == 0
    assert count(ls_lake, "SELECT count(*) FROM labels") == 3
    assert count(ls_lake, "SELECT count(*) FROM events WHERE stage = 'labeled'") == 3
    assert count(ls_lake, "SELECT count(*) FROM events WHERE stage = 'submitted'") == scenes
    row = (
        ls_lake.connect()
        .execute("SELECT annotator, result, completed_at, external_id FROM labels ORDER BY 4")
        .fetchone()
    )
    annotator, result, completed, external_id = row
    assert annotator == "flywheel@example.com"
    assert json.loads(result)[0]["value"]["choices"] == ["hard_brake"]
    assert completed is not None and external_id in {str(t["id"]) for t in done}

    # nothing changed at the vendor: the next sync labels nothing new and writes no duplicate
    again = labeling.sync(ls_lake, vendor, retry=NO_WAIT)
    assert again.labeled == 0 and again.changes == 0  # and nothing is re-listed
    assert count(ls_lake, "SELECT count(*) FROM labels") == 3
    assert count(ls_lake, "SELECT count(*) FROM events WHERE stage = 'labeled'") == 3

    # the same selection again: every scene skipped, no new task in Label Studio
    second = labeling.submit(ls_lake, "brakes", vendor, batch_size=4, retry=NO_WAIT)
    assert second.skipped_submitted == scenes and not second.batches
    assert len(vendor_tasks(label_studio, vendor)) == scenes


class DiesAfterAnswer(LabelStudioVendor):
    """The submitting process dies after Label Studio stored the tasks, before the commit."""

    dies = 1

    def submit(self, tasks):
        ids = super().submit(tasks)
        if self.dies:
            self.dies -= 1
            raise KeyboardInterrupt("killed between the vendor's answer and the local commit")
        return ids


def test_crash_between_vendor_answer_and_commit_then_rerun_has_no_duplicate(
    ls_lake, vendor, label_studio
):
    scenes = count(ls_lake, "SELECT count(*) FROM scenes")
    dying = DiesAfterAnswer(
        label_studio.url, label_studio.token, project_title=vendor.project_title, chunk_size=3
    )
    with pytest.raises(KeyboardInterrupt):
        labeling.submit(ls_lake, "brakes", dying, batch_size=scenes, retry=NO_WAIT)
    assert len(vendor_tasks(label_studio, vendor)) == min(scenes, dying.chunk_size)

    rerun = labeling.submit(ls_lake, "brakes", vendor, batch_size=scenes, retry=NO_WAIT)
    assert sum(b.reconciled for b in rerun.batches) == min(scenes, dying.chunk_size)
    tasks = vendor_tasks(label_studio, vendor)
    assert len(tasks) == scenes
    assert len({t["data"]["scene_id"] for t in tasks}) == scenes
    assert set(labeling.batches(ls_lake)["state"]) == {"submitted"}


def test_bad_token_is_a_clear_error_naming_the_url_not_the_key(ls_lake, label_studio):
    secret = "not-the-token-" + uuid.uuid4().hex
    bad = LabelStudioVendor(label_studio.url, secret, project_title="never created")
    assert secret not in repr(bad)
    with pytest.raises(VendorError) as caught:
        labeling.submit(ls_lake, "brakes", bad, retry=NO_WAIT)
    message = str(caught.value)
    assert label_studio.url in message and "LABEL_STUDIO_API_KEY" in message
    assert secret not in message and not isinstance(caught.value, TransientError)
    assert labeling.batches(ls_lake)["state"].eq("submitting").all()  # resumable


# -- without a server ----------------------------------------------------------------------
def test_open_vendor_reads_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"LABEL_STUDIO_URL.*LABEL_STUDIO_API_KEY"):
        open_vendor("label-studio", tmp_path, LabelingConfig())
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "k3y-" + "x" * 20)
    vendor = open_vendor("label-studio", tmp_path, LabelingConfig(price_per_task=0.3))
    assert isinstance(vendor, LabelStudioVendor) and vendor.price_per_task == 0.3
    assert vendor.url == "http://127.0.0.1:9" and "k3y-" not in repr(vendor)


def test_label_config_has_no_image_unless_keyframes():
    config = label_config()
    assert "$image" not in config and "RectangleLabels" not in config
    assert '<Choice value="other"/>' in config and "TextArea" in config
    assert "RectangleLabels" in label_config(keyframes=True)


@pytest.fixture
def fake_server():
    """A loopback HTTP server answering every request with `reply` (status, headers)."""
    reply = {"status": 503, "headers": {}}

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            self.send_response(reply["status"])
            for name, value in reply["headers"].items():
                self.send_header(name, value)
            body = b'{"detail": "nope"}'
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", reply
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    ("status", "headers", "transient", "retry_after"),
    [
        (429, {"Retry-After": "7"}, True, 7.0),
        (503, {}, True, None),
        (401, {}, False, None),
        (403, {}, False, None),
        (400, {}, False, None),
    ],
)
def test_http_errors_map_to_transient_or_vendor_errors(
    fake_server, status, headers, transient, retry_after
):
    url, reply = fake_server
    reply.update(status=status, headers=headers)
    vendor = LabelStudioVendor(url, "sekrit-key-123", timeout=5)
    with pytest.raises(VendorError) as caught:
        vendor.ensure_project()
    assert isinstance(caught.value, TransientError) is transient
    assert getattr(caught.value, "retry_after", None) == retry_after
    assert url in str(caught.value) and "sekrit" not in str(caught.value)
    if status in (401, 403):
        assert "LABEL_STUDIO_API_KEY" in str(caught.value)


def test_connection_refused_and_timeouts_are_transient():
    vendor = LabelStudioVendor(f"http://127.0.0.1:{free_port()}", "k", timeout=2)
    with pytest.raises(TransientError, match="could not connect"):
        vendor.ensure_project()


def test_personal_access_token_is_exchanged_for_a_bearer_token(label_studio):
    created = api(label_studio, "POST", "/api/token/")
    refresh = created.get("token") or created.get("refresh")
    assert refresh and refresh.startswith("eyJ"), sorted(created)
    vendor = LabelStudioVendor(
        label_studio.url, refresh, project_title=f"flywheel pat {uuid.uuid4().hex[:8]}"
    )
    project = vendor.ensure_project()
    assert vendor.find([f"b/{project}"]) == {}
    vendor.api._access = "expired.or.revoked"  # a refused access token is renewed once
    assert vendor.changes(None) == ([], None)
    assert refresh not in repr(vendor)


class StopsServerAfterFirstImport(LabelStudioVendor):
    """Label Studio goes down right after accepting the first chunk of a submit."""

    server = None

    def submit(self, tasks):
        ids = super().submit(tasks)
        if self.server is not None:
            self.server.stop()
            self.server = None
        return ids


def test_server_down_mid_submit_then_restarted_rerun_completes(ls_lake, vendor, label_studio):
    """Last in this module: it stops and restarts the session's Label Studio."""
    scenes = count(ls_lake, "SELECT count(*) FROM scenes")
    flaky = StopsServerAfterFirstImport(
        label_studio.url,
        label_studio.token,
        project_title=vendor.project_title,
        chunk_size=3,
        timeout=5,
    )
    flaky.server = label_studio
    try:
        with pytest.raises(VendorError) as caught:
            labeling.submit(ls_lake, "brakes", flaky, batch_size=scenes, retry=NO_WAIT)
        assert label_studio.url in str(caught.value) and "rerun" in str(caught.value)
        assert set(labeling.batches(ls_lake)["state"]) == {"submitting"}
    finally:
        label_studio.start()  # same port, same data
    rerun = labeling.submit(ls_lake, "brakes", vendor, batch_size=scenes, retry=NO_WAIT)
    # the first chunk's ids were checkpointed before the outage: only the rest is sent
    assert sum(b.submitted for b in rerun.batches) == scenes - 3
    assert set(labeling.batches(ls_lake)["state"]) == {"submitted"}
    tasks = vendor_tasks(label_studio, vendor)
    assert len(tasks) == len({t["data"]["scene_id"] for t in tasks}) == scenes
