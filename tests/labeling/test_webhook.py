"""The webhook receiver: through HTTP on loopback (auth, malformed bodies, coalesced syncs, the
secret kept out of every log and error), then end to end with the real Label Studio: register,
annotate, and the label reaches the lake with no sync called by hand."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

import labeling
from cli import cli
from flywheel.errors import ConfigError, VendorError
from labeling import webhook
from labeling.vendors.label_studio import LabelStudioVendor
from labeling.webhook import SECRET_ENV, SECRET_HEADER, Coalescer, WebhookReceiver

from .test_label_studio import NO_WAIT, annotate, api, count, vendor_tasks

SECRET = "wh-" + uuid.uuid4().hex + uuid.uuid4().hex  # unique: any occurrence is a leak
REPO = Path(__file__).resolve().parents[2]


def wait_until(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.fixture
def logs(caplog):
    """Everything the receiver logs, at every level."""
    caplog.set_level(logging.DEBUG, logger=webhook.log.name)
    return caplog


@pytest.fixture
def synced_lake(lake, vendor, clock, retry):
    """A lake with the simulated vendor's tasks submitted, all labeled at the vendor by now."""
    labeling.submit(lake, "brakes", vendor, batch_size=5, retry=retry)
    clock.advance(days=30)
    return lake


@pytest.fixture
def receiver(synced_lake, vendor, retry):
    """The receiver wired to a real (coalesced) sync of the simulated vendor."""
    coalescer = Coalescer(lambda: labeling.sync(synced_lake, vendor, retry=retry), delay_s=0.05)
    coalescer.start()
    with WebhookReceiver(lambda payload: coalescer.request(), secret=SECRET) as server:
        server.coalescer = coalescer
        yield server
    coalescer.stop()


def post(url: str, body: bytes | str = b'{"action": "ANNOTATION_CREATED"}', secret=SECRET):
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    return requests.post(url, data=body, headers=headers, timeout=10)


def test_wrong_or_missing_secret_is_401_without_detail_and_no_sync(receiver, synced_lake, logs):
    for secret in ("nope", SECRET[:-1], SECRET + "x", "", None):
        response = post(receiver.url, secret=secret)
        assert response.status_code == 401
        assert response.json() == {"error": "unauthorized"}
    assert receiver.refused == 5 and receiver.calls == 0
    time.sleep(0.3)
    assert receiver.coalescer.runs == 0
    assert count(synced_lake, "SELECT count(*) FROM labels") == 0
    assert SECRET not in logs.text and SECRET[:-1] not in logs.text


def test_the_right_secret_triggers_a_sync(receiver, synced_lake, logs):
    response = post(receiver.url)
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert receiver.coalescer.wait_idle(20)
    assert receiver.coalescer.runs == 1
    assert count(synced_lake, "SELECT count(*) FROM labels") == 12
    assert "POST /flywheel/webhook 200" in logs.text and SECRET not in logs.text


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_malformed_bodies_are_400_and_sync_nothing(receiver, synced_lake, body):
    response = post(receiver.url, body)
    assert response.status_code == 400
    time.sleep(0.3)
    assert receiver.calls == 0 and receiver.coalescer.runs == 0
    assert count(synced_lake, "SELECT count(*) FROM labels") == 0


def test_other_paths_and_methods(receiver):
    root = receiver.url.rsplit("/flywheel/", 1)[0]
    assert post(root + "/elsewhere").status_code == 404
    assert requests.get(receiver.url, timeout=10).status_code == 405
    assert receiver.calls == 0


def test_a_burst_is_one_sync_and_calls_during_a_sync_make_exactly_one_more():
    started, release = threading.Event(), threading.Event()
    runs: list[float] = []

    def slow_sync():
        runs.append(time.monotonic())
        started.set()
        release.wait(10)

    coalescer = Coalescer(slow_sync, delay_s=0.05)
    with WebhookReceiver(lambda payload: coalescer.request(), secret=SECRET) as server:
        threads = [threading.Thread(target=post, args=(server.url,)) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        coalescer.start()  # a burst that came in before any sync ran: one sync
        assert started.wait(10)
        for _ in range(10):  # ten more calls while that sync runs
            assert post(server.url).status_code == 200
        release.set()
        assert coalescer.wait_idle(10)
        assert server.calls == 20
    coalescer.stop()
    assert len(runs) == 2  # the burst, then one for everything that came during it


def test_a_failed_sync_is_logged_without_the_secret_and_retried(logs):
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise VendorError("Label Studio at http://ls.example: GET /api/tasks answered 400")

    coalescer = Coalescer(flaky, delay_s=0, retry_s=0.05).start()
    coalescer.request()
    assert coalescer.wait_idle(10)
    coalescer.stop()
    assert len(attempts) == 2 and coalescer.failures == 0
    assert "sync failed (VendorError" in logs.text and SECRET not in logs.text


def test_the_secret_comes_from_the_environment_and_never_shows(monkeypatch, logs):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    with pytest.raises(ConfigError, match=SECRET_ENV):
        webhook.secret_from_env()
    short = "short-" + uuid.uuid4().hex[:6]
    monkeypatch.setenv(SECRET_ENV, short)
    with pytest.raises(ConfigError) as caught:
        webhook.secret_from_env()
    assert short not in str(caught.value)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    assert webhook.secret_from_env() == SECRET
    with pytest.raises(ConfigError) as caught:
        WebhookReceiver(print, secret=short)
    assert short not in str(caught.value)
    server = WebhookReceiver(print, secret=SECRET)
    try:
        assert SECRET not in repr(server) and SECRET not in repr(vars(server))
    finally:
        server.shutdown()
    assert SECRET not in logs.text


def test_cli_needs_the_secret(monkeypatch, tmp_path):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    result = CliRunner().invoke(cli, ["label", "webhook", "--lake", str(tmp_path / "lake")])
    assert result.exit_code == 2
    assert SECRET_ENV in result.output


def test_cli_refuses_to_register_an_unroutable_address(monkeypatch, tmp_path):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "k3y")
    args = ["label", "webhook", "--host", "0.0.0.0", "--register", "--lake", str(tmp_path)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "--public-url" in result.output
    assert SECRET not in result.output


# -- with the real Label Studio ---------------------------------------------------------------
def test_register_webhook_is_idempotent_and_errors_hide_the_secret(label_studio):
    vendor = LabelStudioVendor(
        label_studio.url, label_studio.token, project_title=f"wh {uuid.uuid4().hex[:8]}"
    )
    project = vendor.ensure_project()
    url = "http://127.0.0.1:9/flywheel/webhook"
    first = vendor.register_webhook(url, {SECRET_HEADER: SECRET})
    rotated = "rotated-" + uuid.uuid4().hex
    again = vendor.register_webhook(url, {SECRET_HEADER: rotated})
    hooks = [h for h in api(label_studio, "GET", "/api/webhooks/", params={"project": project})]
    hooks = [h for h in hooks if h["url"] == url]
    assert first == again and len(hooks) == 1
    assert hooks[0]["headers"] == {SECRET_HEADER: rotated} and hooks[0]["send_payload"] is False
    assert "ANNOTATION_CREATED" in hooks[0]["actions"]
    with pytest.raises(VendorError) as caught:  # a header name Label Studio refuses
        vendor.register_webhook(url, {"Bad Header!": SECRET})
    assert SECRET not in str(caught.value)


def test_an_annotation_reaches_the_lake_through_the_webhook(ls_lake, label_studio, tmp_path):
    """`flywheel label webhook --register` as a user runs it; nobody calls sync."""
    title = f"flywheel webhook {uuid.uuid4().hex[:8]}"
    vendor = LabelStudioVendor(label_studio.url, label_studio.token, project_title=title)
    labeling.submit(ls_lake, "brakes", vendor, batch_size=100, retry=NO_WAIT)
    (tmp_path / "flywheel.toml").write_text(f'[labeling]\nlabel_studio_project = "{title}"\n')
    env = {
        **os.environ,
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.token,
        SECRET_ENV: SECRET,
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "cli", "label", "webhook", "--port", "0"]
    command += ["--register", "--lake", str(ls_lake.root)]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, process.stderr.read()
        # the start-up sync records the submitted tasks; then annotate in Label Studio
        assert wait_until(lambda: count(ls_lake, "SELECT count(*) FROM tasks") > 0)
        task = sorted(vendor_tasks(label_studio, vendor), key=lambda t: t["id"])[0]
        annotate(label_studio, task["id"], "near_miss")
        assert wait_until(lambda: count(ls_lake, "SELECT count(*) FROM labels") == 1, 30)
        result = ls_lake.connect().execute("SELECT result, external_id FROM labels").fetchone()
        assert json.loads(result[0])[0]["value"]["choices"] == ["near_miss"]
        assert result[1] == str(task["id"])
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert SECRET not in out + err
    assert "POST /flywheel/webhook 200" in err  # Label Studio called, with the secret
