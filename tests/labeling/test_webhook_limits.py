"""The webhook receiver's limits, each against the real receiver on loopback: a total deadline
per request (slowloris), a cap on the threads serving at once, deeply nested JSON refused
without a RecursionError, a long listen backlog, and a body size limit (413)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid

import pytest
import requests

from labeling import webhook
from labeling.webhook import SECRET_HEADER, WebhookReceiver, too_deep

SECRET = "wh-" + uuid.uuid4().hex + uuid.uuid4().hex


@pytest.fixture
def calls():
    return []


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG, logger=webhook.log.name)
    return caplog


def receiver(calls, **limits):
    return WebhookReceiver(calls.append, secret=SECRET, **limits)


def post(url: str, body: bytes, timeout: float = 10) -> requests.Response:
    headers = {"Content-Type": "application/json", SECRET_HEADER: SECRET}
    return requests.post(url, data=body, headers=headers, timeout=timeout)


def connect(server: WebhookReceiver) -> socket.socket:
    host, port = server.server.server_address[:2]
    return socket.create_connection((host, port), timeout=10)


def request_head(server: WebhookReceiver, length: int) -> bytes:
    host, port = server.server.server_address[:2]
    return (
        f"POST {server.path} HTTP/1.1\r\nHost: {host}:{port}\r\n{SECRET_HEADER}: {SECRET}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed `sock` (None: still open after `seconds`)."""
    start = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - start < seconds:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except ConnectionError:
            return time.monotonic() - start
    return None


def test_a_trickling_client_is_cut_off_at_the_deadline_however_often_it_sends(calls, logs):
    """Slowloris: a byte every 0.1 s never trips a per-read timeout; the deadline does."""
    with receiver(calls, deadline_s=1.0, read_timeout_s=5.0) as server:
        sock = connect(server)
        head = request_head(server, 2)
        started = time.monotonic()
        cut = None
        for i in range(60):  # at most 6 s of trickling (the deadline is 1 s)
            try:
                sock.sendall(head[i % len(head) : i % len(head) + 1])
            except OSError:
                cut = time.monotonic() - started
                break
            if closed_within(sock, 0.1) is not None:
                cut = time.monotonic() - started
                break
        sock.close()
        assert cut is not None, "the receiver let a trickling client hold a thread for 6 s"
        assert cut < 3.0
        # the receiver still answers everyone else
        assert post(server.url, b'{"action": "ANNOTATION_CREATED"}').status_code == 200
    assert calls == [{"action": "ANNOTATION_CREATED"}]


def test_a_stalled_body_is_cut_off_at_the_deadline(calls):
    with receiver(calls, deadline_s=1.0, read_timeout_s=5.0) as server:
        sock = connect(server)
        sock.sendall(request_head(server, 100) + b'{"action":')  # 90 bytes never come
        waited = closed_within(sock, 4.0)
        sock.close()
        assert waited is not None and waited < 3.0
    assert calls == []


def test_threads_are_capped_and_the_rest_wait_or_get_503(calls):
    cap = 3
    with receiver(calls, deadline_s=2.0, max_threads=cap, queue_wait_s=0.2) as server:
        stalled = [connect(server) for _ in range(cap + 4)]
        for sock in stalled:
            sock.sendall(b"POST ")  # a request line that never ends
        deadline = time.monotonic() + 5
        while server.peak < cap and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.peak == cap
        time.sleep(0.5)
        assert server.active <= cap  # never more than the cap at once
        assert server.busy >= 1  # connections beyond it were answered 503, not given threads
        # once the stalled ones hit their deadline, a real call goes through
        for sock in stalled:
            sock.close()
        answered = None
        for _ in range(50):  # bounded: up to ~10 s
            try:
                answered = post(server.url, b'{"action": "X"}', timeout=5).status_code
            except requests.ConnectionError:
                answered = None
            if answered == 200:
                break
            time.sleep(0.2)
        assert answered == 200
        assert server.peak <= cap


def test_busy_answer_is_a_503(calls):
    with receiver(calls, deadline_s=3.0, max_threads=1, queue_wait_s=0.1) as server:
        hog = connect(server)
        hog.sendall(b"POST ")
        time.sleep(0.3)
        sock = connect(server)
        sock.settimeout(5)
        answer = sock.recv(4096)
        sock.close()
        hog.close()
        assert answer.startswith(b"HTTP/1.0 503")


@pytest.mark.parametrize("depth", [65, 1_000, 100_000, 1_000_000])
def test_deeply_nested_json_is_400_without_a_recursion_error(calls, logs, depth):
    with receiver(calls) as server:
        for body in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
            response = post(server.url, body)
            assert response.status_code == 400
            assert "nested" in response.json()["error"]
        assert post(server.url, b'{"action": "A"}').status_code == 200
    assert calls == [{"action": "A"}]
    assert "Recursion" not in logs.text and "Traceback" not in logs.text


def test_nesting_within_the_limit_and_brackets_in_strings_are_fine(calls):
    nested = {"action": "A", "deep": json.loads("[" * 60 + "]" * 60), "text": "[[[[" * 100}
    with receiver(calls) as server:
        assert post(server.url, json.dumps(nested).encode()).status_code == 200
    assert calls == [nested]
    assert not too_deep(b'{"a": "\\\\", "b": "[[[["}', 2)
    assert too_deep(b'"unterminated \\" [[[[' + b"[" * 10, 64) is False  # inside the string


def test_a_body_over_the_limit_is_413_before_it_is_read(calls):
    with receiver(calls, max_body=1024) as server:
        sock = connect(server)
        sock.sendall(request_head(server, 10 * 1024 * 1024))  # announces 10 MB, sends none
        sock.settimeout(5)
        answer = sock.recv(4096)
        sock.close()
        assert answer.split(b"\r\n", 1)[0].split()[1] == b"413"
        assert post(server.url, b'{"pad": "' + b"x" * 2000 + b'"}').status_code == 413
        assert post(server.url, b'{"action": "small"}').status_code == 200
    assert calls == [{"action": "small"}]


def test_the_listen_backlog_holds_a_burst_of_connections(calls):
    with receiver(calls, max_threads=2) as server:
        assert server.server.request_queue_size >= 128
        burst = 100
        results: list[int] = []
        lock = threading.Lock()

        def call() -> None:
            try:
                status = post(server.url, b'{"action": "burst"}', timeout=20).status_code
            except requests.RequestException:
                status = -1
            with lock:
                results.append(status)

        threads = [threading.Thread(target=call) for _ in range(burst)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(results) == burst
        assert results.count(200) == burst  # none refused by the kernel or lost
        assert server.peak <= 2
    assert len(calls) == burst


def test_a_hostile_request_line_is_logged_escaped(calls, logs):
    with receiver(calls) as server:
        sock = connect(server)
        sock.sendall(b"GET /flywheel/webhook\x1b[2J\x07x HTTP/1.0\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.0 404")
        sock.close()
    logged = [r.getMessage() for r in logs.records]
    assert any("\\x1b[2J\\x07x" in line for line in logged)
    assert not any("\x1b" in line or "\x07" in line for line in logged)
