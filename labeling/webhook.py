"""Webhooks: the vendor calls back when labels change, and a sync pulls them within seconds.

    FLYWHEEL_WEBHOOK_SECRET=… flywheel label webhook --port 8765 --register

A small receiver on the standard library's `ThreadingHTTPServer`:

- **Auth.** Every call must carry the shared secret in the ``X-Flywheel-Webhook-Secret`` header
  (Label Studio signs nothing; a webhook can only send static headers, set when it is
  registered). It is compared in constant time (`hmac.compare_digest`); a missing or wrong
  secret gets 401 with no detail, before the body is read. The secret comes only from
  ``$FLYWHEEL_WEBHOOK_SECRET`` and never appears in a log line, a message or a repr.
- **Body.** A JSON object (Label Studio sends ``{"action": …}``); anything else is 400, and
  so is JSON nested deeper than `MAX_DEPTH` (refused before parsing: no RecursionError). A
  ``Content-Length`` above `MAX_BODY` is 413, before a byte of the body is read.
- **Limits.** Each request has `DEADLINE_S` in all, headers and body together, however slowly
  its bytes trickle in (slowloris), besides `READ_TIMEOUT_S` per read; past it the connection
  is dropped. At most `MAX_THREADS` requests are served at once: the next ones wait in the
  listen backlog (`BACKLOG` connections) for up to `QUEUE_WAIT_S`, then get 503.
- **Work.** A valid call only *asks* for a sync and is answered 200 at once (Label Studio
  waits at most 1 s and never retries). `Coalescer` runs one sync at a time: a burst of calls
  becomes one sync, and calls arriving during a sync become exactly one more after it.

Webhooks make labels arrive sooner; they cannot replace `flywheel label sync`: a receiver that
is down misses calls for good (no retry at the vendor), so keep a periodic sync as well.

>>> secret_from_env({"FLYWHEEL_WEBHOOK_SECRET": "x" * 32}) == "x" * 32
True
"""

from __future__ import annotations

import contextlib
import hmac
import http.server
import io
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from flywheel.console import clean
from flywheel.errors import ConfigError
from flywheel.lake import Lake
from labeling.vendors.base import Vendor

SECRET_ENV = "FLYWHEEL_WEBHOOK_SECRET"
SECRET_HEADER = "X-Flywheel-Webhook-Secret"
PATH = "/flywheel/webhook"
MIN_SECRET = 16  # characters: anything shorter is guessable over the network
MAX_BODY = 8 * 1024 * 1024  # bytes; Label Studio's biggest payloads are bulk task lists
MAX_DEPTH = 64  # JSON nesting; Label Studio's payloads are a handful of levels deep
DEADLINE_S = 10.0  # seconds per request, all reads together (Label Studio waits 1 s anyway)
READ_TIMEOUT_S = 5.0  # seconds per socket read
MAX_THREADS = 16  # requests served at once; each is cheap (it only asks for a sync)
BACKLOG = 128  # connections the kernel queues while every thread is busy
QUEUE_WAIT_S = 1.0  # how long the accept loop waits for a free thread before a 503

log = logging.getLogger("flywheel.labeling.webhook")


def secret_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The shared secret from ``$FLYWHEEL_WEBHOOK_SECRET`` (ConfigError when unset or short)."""
    secret = (os.environ if environ is None else environ).get(SECRET_ENV, "").strip()
    if len(secret) < MIN_SECRET:
        state = "is not set" if not secret else f"is shorter than {MIN_SECRET} characters"
        raise ConfigError(
            f"${SECRET_ENV} {state}; set it to a long random value, e.g. "
            '`export FLYWHEEL_WEBHOOK_SECRET=$(python -c "import secrets; '
            'print(secrets.token_urlsafe(32))")`'
        )
    return secret


class Coalescer:
    """Runs `action` in one background thread whenever asked, never two at once.

    `request()` never blocks. Requests made while `action` runs are folded into one more run
    after it; a burst within `delay_s` is one run. A failing run is logged (type and message
    only) and retried after a backoff of `retry_s`, doubling up to a minute, until one succeeds
    (requests during the backoff wait for it: they would fail the same way).

    >>> runs = []
    >>> c = Coalescer(lambda: runs.append(1), delay_s=0).start()
    >>> c.request(); c.wait_idle(5); c.stop()
    True
    >>> runs
    [1]
    """

    def __init__(
        self, action: Callable[[], Any], *, delay_s: float = 0.2, retry_s: float = 5.0
    ) -> None:
        self.action = action
        self.delay_s = delay_s
        self.retry_s = retry_s
        self.runs = 0  # completed runs, failed or not
        self.failures = 0  # consecutive failed runs
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._busy = False
        self._thread = threading.Thread(target=self._loop, name="flywheel-sync", daemon=True)

    def start(self) -> Coalescer:
        self._thread.start()
        return self

    def request(self) -> None:
        """Ask for a run (soon, or right after the one in progress)."""
        with self._idle:
            self._busy = True
            self._wake.set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no run is pending or running; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._busy, timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the run in progress (if any) and end the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.is_set():
                return
            self._stop.wait(self.delay_s)  # let the rest of a burst arrive
            self._wake.clear()  # from here on, a new request means one more run
            try:
                self.action()
            except Exception as error:  # the receiver must outlive a vendor outage
                self.failures += 1
                backoff = min(60.0, self.retry_s * 2 ** (self.failures - 1))
                log.error(  # the error may quote a vendor: escaped and redacted
                    "sync failed (%s: %s); retrying in %.0f s",
                    type(error).__name__,
                    clean(error),
                    backoff,
                )
                self.runs += 1
                if not self._stop.wait(backoff):
                    self._wake.set()
                continue
            self.failures = 0
            self.runs += 1
            with self._idle:
                if not self._wake.is_set():
                    self._busy = False
                    self._idle.notify_all()


class WebhookReceiver:
    """An HTTP server taking the vendor's calls on `path` and passing each valid JSON body to
    `on_call` (from the server's threads; it must return quickly).

    >>> with WebhookReceiver(print, secret="s" * 32) as receiver:  # port 0: a free one
    ...     receiver.url  # doctest: +ELLIPSIS
    'http://127.0.0.1:.../flywheel/webhook'
    """

    def __init__(
        self,
        on_call: Callable[[dict[str, Any]], None],
        *,
        secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = PATH,
        deadline_s: float = DEADLINE_S,
        read_timeout_s: float = READ_TIMEOUT_S,
        max_threads: int = MAX_THREADS,
        max_body: int = MAX_BODY,
        max_depth: int = MAX_DEPTH,
        queue_wait_s: float = QUEUE_WAIT_S,
    ) -> None:
        if len(secret) < MIN_SECRET:
            raise ConfigError(f"the webhook secret must be at least {MIN_SECRET} characters")
        self.path = path
        self.deadline_s = deadline_s
        self.read_timeout_s = read_timeout_s
        self.max_body = max_body
        self.max_depth = max_depth
        self.calls = 0  # accepted calls
        self.refused = 0  # 401s
        self.busy = 0  # 503s: every thread was taken
        self.active = 0  # requests being served now
        self.peak = 0  # the most served at once
        self._count = threading.Lock()  # the server's threads update the counters
        handler = _handler(on_call, secret.encode(), path, self)
        try:
            self.server = _Server((host, port), handler, self, max_threads, queue_wait_s)
        except OSError as error:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({error.strerror or error}); pick another "
                "--port or --host"
            ) from None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:  # never the secret
        return f"WebhookReceiver(url={self.url!r})"

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{self.path}"

    def start(self) -> WebhookReceiver:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="flywheel-webhook", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until `shutdown` (or Ctrl-C)."""
        self.server.serve_forever()

    def shutdown(self) -> None:
        """Stop serving (when started with `start`) and close the socket."""
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(10)
            self._thread = None
        self.server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class _Server(http.server.ThreadingHTTPServer):
    """A threading HTTP server with a cap on its threads and a long listen backlog."""

    daemon_threads = True
    request_queue_size = BACKLOG

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[http.server.BaseHTTPRequestHandler],
        owner: WebhookReceiver,
        max_threads: int,
        queue_wait_s: float,
    ) -> None:
        self._owner = owner
        self._slots = threading.BoundedSemaphore(max_threads)
        self._queue_wait_s = queue_wait_s
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # waiting here stops the accept loop, so new connections queue in the backlog
        if not self._slots.acquire(timeout=self._queue_wait_s):
            with self._owner._count:
                self._owner.busy += 1
            _refuse_busy(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: nothing else will free the slot
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        owner = self._owner
        with owner._count:
            owner.active += 1
            owner.peak = max(owner.peak, owner.active)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with owner._count:
                owner.active -= 1
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that vanished mid-request is not worth a traceback on the terminal
        log.warning("dropped a request from %s (it failed or went away)", client_address[0])


def _refuse_busy(request: socket.socket) -> None:
    body = b'{"error": "busy"}'
    head = (
        "HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    with contextlib.suppress(OSError):
        request.settimeout(0.5)
        request.sendall(head.encode() + body)


class _DeadlineReader(io.RawIOBase):
    """A socket's reads, each bounded by `read_timeout_s` and all of them by `deadline`."""

    def __init__(self, sock: socket.socket, deadline: float, read_timeout_s: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._read_timeout_s = read_timeout_s

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request took longer than its deadline")
        self._sock.settimeout(min(self._read_timeout_s, remaining))
        return self._sock.recv_into(buffer)


# a JSON string (escapes included). An unterminated one runs to the end: it matches at its
# first try, so the scan stays linear whatever the body (no retry from every later quote)
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.?)*+(?:"|\Z)', re.DOTALL)
# every byte that is not a bracket
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def too_deep(body: bytes, limit: int) -> bool:
    """Whether the JSON text `body` nests arrays and objects deeper than `limit`, found
    without parsing it (a parser would recurse once per level).

    >>> too_deep(b'{"a": [1, {"b": "]]]"}]}', 3), too_deep(b"[" * 100 + b"]" * 100, 64)
    (False, True)
    """
    depth = 0
    for byte in _JSON_STRING.sub(b'""', body).translate(None, _NOT_BRACKETS):
        depth += 1 if byte in (0x5B, 0x7B) else -1
        if depth > limit:
            return True
    return False


def _handler(
    on_call: Callable[[dict[str, Any]], None], secret: bytes, path: str, owner: WebhookReceiver
) -> type[http.server.BaseHTTPRequestHandler]:
    """The request handler class, closing over the secret (kept off every object's repr)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "flywheel-webhook"
        sys_version = ""
        timeout = owner.read_timeout_s  # per socket read; the deadline bounds them all

        def setup(self) -> None:
            super().setup()
            plain = self.rfile  # replaced (and closed, or the socket would stay open)
            deadline = time.monotonic() + owner.deadline_s
            self.rfile = io.BufferedReader(
                _DeadlineReader(self.connection, deadline, owner.read_timeout_s)
            )
            plain.close()

        def do_POST(self) -> None:
            if urlsplit(self.path).path != path:
                self._answer(404, {"error": "not found"})
                return
            given = self.headers.get(SECRET_HEADER, "").encode("utf-8", "surrogateescape")
            # constant time; an absent header compares like a wrong one
            if not hmac.compare_digest(given, secret):
                with owner._count:
                    owner.refused += 1
                self.close_connection = True  # the body stays unread
                self._answer(401, {"error": "unauthorized"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > owner.max_body:
                self.close_connection = True
                too_big = length > owner.max_body
                self._answer(
                    413 if too_big else 400, {"error": "too large" if too_big else "bad length"}
                )
                return
            body = self.rfile.read(length)
            if len(body) < length:  # the client closed early
                self.close_connection = True
                self._answer(400, {"error": "incomplete body"})
                return
            if too_deep(body, owner.max_depth):
                self._answer(400, {"error": f"JSON nested deeper than {owner.max_depth} levels"})
                return
            try:
                payload = json.loads(body or b"null")
            except (ValueError, UnicodeDecodeError, RecursionError):
                payload = None
            if not isinstance(payload, dict):
                self._answer(400, {"error": "expected a JSON object"})
                return
            with owner._count:
                owner.calls += 1
            on_call(payload)
            self._answer(200, {"ok": True})

        def do_GET(self) -> None:
            status = 405 if urlsplit(self.path).path == path else 404
            self._answer(status, {"error": "POST only" if status == 405 else "not found"})

        do_PUT = do_PATCH = do_DELETE = do_GET

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.connection.settimeout(owner.read_timeout_s)  # a write may outlast the deadline
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        # what is logged: method, path without its query, status; never a header (the secret)
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            # the method and the path are the client's text: escaped, they cannot forge a line
            where = urlsplit(self.path).path if getattr(self, "path", None) else "?"
            log.info("%s %s %s", clean(getattr(self, "command", "?")), clean(where), code)

        def log_error(self, format: str, *args: Any) -> None:
            log.warning("refused a malformed request from %s", self.client_address[0])

    return Handler


def serve(
    lake: str | Lake | None,
    vendor: Vendor,
    *,
    secret: str,
    host: str = "127.0.0.1",
    port: int = 0,
    register: bool = False,
    public_url: str | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Receive `vendor`'s webhooks and sync it into `lake` on each (coalesced) call, until
    Ctrl-C. `register`: register the receiver at the vendor first (one with
    ``register_webhook``, as Label Studio), at `public_url` when the vendor reaches this machine
    under another address (a proxy). A first sync runs at start, so nothing that happened while
    no receiver listened is left waiting.

    Not run as a doctest: it serves until Ctrl-C (tests/labeling/test_webhook.py runs it).

    >>> serve(lake, vendor, secret=secret_from_env(), port=8765, register=True)  # doctest: +SKIP
    """
    from labeling.sync import sync

    def run_sync() -> None:
        summary = sync(lake, vendor)
        log.info(
            "synced %s: %d changes, %d newly labeled",
            summary.vendor,
            summary.changes,
            summary.labeled,
        )

    if register and not hasattr(vendor, "register_webhook"):
        raise ConfigError(f"{vendor.location} cannot register webhooks")
    if register and not public_url and host in ("", "0.0.0.0", "::"):
        raise ConfigError(
            f"cannot register http://{host or '0.0.0.0'}:…: the vendor needs an address it can "
            "reach; pass public_url (--public-url) or a specific host"
        )
    coalescer = Coalescer(run_sync)
    receiver = WebhookReceiver(
        lambda payload: coalescer.request(), secret=secret, host=host, port=port
    )
    coalescer.start()
    try:
        url = public_url or receiver.url
        if register:
            vendor.register_webhook(url, {SECRET_HEADER: secret})
        if on_ready is not None:
            on_ready(url)
        coalescer.request()
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the way to stop
            receiver.serve_forever()
    finally:
        receiver.server.server_close()
        coalescer.stop()
