"""The routes of `flywheel serve` (docs/serve.md), over one lake, on Starlette.

Pages (GET, HTML): ``/`` the report, live, with plain links to ``/selections/NAME``,
``/batches/BATCH_ID`` and ``/alerts/ALERT_ID`` (each a gallery of its scenes) and the decisions
waiting; ``/decisions`` those alone. Actions (POST, JSON, `serve.actions`):
``/api/batches/BATCH_ID/approve``, ``/api/batches/BATCH_ID/reject``,
``/api/alerts/ALERT_ID/ack``, each needing ``Authorization: Bearer $FLYWHEEL_SERVE_TOKEN``.
Every ``/api`` answer is JSON, errors included. Handlers are plain functions: Starlette runs
them in its thread pool, since they read the lake and call vendors.
"""

from __future__ import annotations

import hmac
import secrets
import socket
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

import pandas as pd
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

import labeling
import metrics
import mining
from flywheel.config import Config, load_config
from flywheel.errors import InputError, UsageError
from flywheel.lake import Lake
from flywheel.redact import redact
from metrics.html import render
from mining.gallery import gallery
from serve import actions, pages

USER_HEADER = "X-Flywheel-User"
DEFAULT_USER = "serve"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]", "::1")


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address or localhost."""
    import ipaddress

    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_app(
    lake: Lake,
    token: str | None,
    config: Config | None = None,
    allowed_hosts: Iterable[str] | None = None,
) -> ASGIApp:
    """The app over `lake`. `token` None or empty: every action answers 401. `allowed_hosts`:
    the Host names accepted (None: any); a loopback server accepts only loopback names, so a
    web page that rebinds its own name to 127.0.0.1 cannot read the lake."""
    settings = config or load_config()
    secret = (token or "").strip()

    def authorized(request: Request) -> bool:
        if not secret:
            return False
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), secret.encode()
        )

    def who(request: Request) -> str:
        name = request.headers.get(USER_HEADER, "").strip()
        name = "".join(c for c in name if c.isprintable())[:100]
        return name or DEFAULT_USER

    def act(run: Callable[[Request, str], actions.Answer]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            if not authorized(request):
                return JSONResponse(
                    {"error": "a valid token is required: Authorization: Bearer TOKEN"},
                    401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            status, body = run(request, who(request))
            return _json(body, status)

        return endpoint

    def approve(request: Request, by: str) -> actions.Answer:
        return actions.approve(lake, request.path_params["batch_id"], by, settings)

    def reject(request: Request, by: str) -> actions.Answer:
        return actions.reject(lake, request.path_params["batch_id"], by)

    def ack(request: Request, by: str) -> actions.Answer:
        return actions.acknowledge(lake, request.path_params["alert_id"], by, settings)

    def home(request: Request) -> Response:
        report = metrics.build(lake, config=settings.metrics)
        every = _batches(lake)
        extra = pages.decisions(_pending(every), report.alerts, bool(secret)) + pages.browse(
            report.alerts, report.acknowledged, mining.open(lake).selections(), every
        )
        # the report's alerts link to their served galleries, as the file report's do to files
        links = {f"alert:{a['id']}": f"/alerts/{quote(a['id'], safe='')}" for a in report.alerts}
        return _html(request, lambda nonce: pages.home(render(report, links), extra, nonce))

    def decisions(request: Request) -> Response:
        report = metrics.build(lake, config=settings.metrics)
        body = pages.decisions(_pending(_batches(lake)), report.alerts, bool(secret))
        return _html(request, lambda nonce: pages.page("Decisions", body, nonce))

    def selection(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            frame = mining.open(lake).selection(name)
        except InputError as exc:
            return _not_found(request, str(exc))
        shown = gallery(lake, frame, title=f"selection {name}", camera=True)
        summary = pages.facts([("selection", name), ("scenes", len(frame))])
        return _html(
            request,
            lambda nonce: pages.gallery_page(
                f"Selection {name}",
                "selection",
                summary,
                shown._repr_html_(),
                len(shown.scene_ids),
                nonce,
            ),
        )

    def batch(request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        found = actions.batch(lake, batch_id)
        if found is None:
            return _html(request, lambda n: pages.error_page(404, f"no batch {batch_id!r}", n), 404)
        rows = labeling.batches(lake)
        rows = rows[rows["batch_id"] == batch_id].sort_values("position")
        shown = gallery(lake, rows[["scene_id", "score"]], title=f"batch {batch_id}", camera=True)
        summary = pages.facts(list(found.items()))
        buttons = ""
        if found["state"] == "pending_approval":
            buttons = pages.decisions([found], [], bool(secret), only="batches")
        return _html(
            request,
            lambda nonce: pages.gallery_page(
                f"Batch {batch_id}",
                "labeling batch",
                summary,
                shown._repr_html_(),
                len(shown.scene_ids),
                nonce,
                buttons,
            ),
        )

    def alert(request: Request) -> Response:
        alert_id = request.path_params["alert_id"]
        try:
            frame = metrics.alert_entities(lake, alert_id, config=settings.metrics)
        except InputError as exc:
            return _not_found(request, str(exc))
        report = metrics.build(lake, config=settings.metrics)
        active = [a for a in report.alerts if a["id"] == alert_id]
        acked = [a for a in report.acknowledged if a["id"] == alert_id]
        if active:
            a = active[0]
            rows: list[tuple[str, object]] = [
                ("alert", a["id"]), ("what", a["title"]), ("how much", a["detail"]),
                ("since", a["since"]), ("entities", len(frame)), ("command", a["command"]),
            ]  # fmt: skip
            buttons = pages.decisions([], active, bool(secret), only="alerts")
        elif acked:
            a = acked[0]
            rows = [
                ("alert", alert_id),
                ("what", a["title"]),
                ("acknowledged", f"by {a['by']} at {a['at']}"),
                ("entities", len(frame)),
            ]
            buttons = ""
        else:
            rows = [("alert", alert_id), ("state", "not active"), ("entities", len(frame))]
            buttons = ""
        records = _records(frame)
        ids = list(dict.fromkeys(str(s) for s in frame["scene_id"])) if "scene_id" in frame else []
        shown = gallery(lake, ids, title=f"alert {alert_id}", camera=True)
        summary = (
            pages.facts(rows) + "<h2>Entities</h2>" + pages.table(records, list(frame.columns))
        )
        return _html(
            request,
            lambda nonce: pages.gallery_page(
                f"Alert {alert_id}",
                "alert",
                summary,
                shown._repr_html_(),
                len(shown.scene_ids),
                nonce,
                buttons,
            ),
        )

    def api_missing(request: Request) -> Response:
        return _json({"error": f"no such action: {request.method} {request.url.path}"}, 404)

    routes = [
        Route("/", home, methods=["GET"]),
        Route("/decisions", decisions, methods=["GET"]),
        Route("/selections/{name}", selection, methods=["GET"]),
        Route("/batches/{batch_id}", batch, methods=["GET"]),
        Route("/alerts/{alert_id}", alert, methods=["GET"]),
        Route("/api/batches/{batch_id}/approve", act(approve), methods=["POST"]),
        Route("/api/batches/{batch_id}/reject", act(reject), methods=["POST"]),
        Route("/api/alerts/{alert_id}/ack", act(ack), methods=["POST"]),
        Route("/api/{rest:path}", api_missing, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    if allowed_hosts is None:
        return app
    return _Hosts(app, allowed_hosts)


def _batches(lake: Lake) -> list[dict[str, Any]]:
    frame = labeling.status(lake)
    return [
        {
            "batch_id": str(r["batch_id"]),
            "vendor": str(r["vendor"]),
            "selection": r["selection"],
            "state": str(r["state"]),
            "tasks": int(r["tasks"]),
            "cost": float(r["cost"]),
        }
        for r in frame.to_dict("records")
    ]


def _pending(batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [b for b in batches if b["state"] == "pending_approval"]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (None if _missing(v) else v) for k, v in r.items()} for r in frame.to_dict("records")
    ]


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _csp(nonce: str) -> str:
    # nothing from elsewhere: the pages' own inline CSS, SVG and data: images, one nonced script
    return (
        "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
        f"script-src 'nonce-{nonce}'; connect-src 'self'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    )


def _html(request: Request, build: Callable[[str], str], status: int = 200) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    headers = {**SECURITY_HEADERS, "Content-Security-Policy": _csp(nonce)}
    body = redact(build(nonce)).replace(pages.SCRIPT_MARK, pages.script(nonce), 1)
    return HTMLResponse(body, status, headers=headers)


def _not_found(request: Request, message: str) -> HTMLResponse:
    return _html(request, lambda nonce: pages.error_page(404, message, nonce), 404)


def _json(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status, headers=SECURITY_HEADERS)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/") or request.method != "GET":
        return _json({"error": exc.detail}, exc.status_code)
    return _html(request, lambda nonce: pages.error_page(exc.status_code, exc.detail, nonce),
                 exc.status_code)  # fmt: skip


async def _server_error(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/api/"):
        return _json({"error": f"internal error: {type(exc).__name__}"}, 500)
    return PlainTextResponse("internal error", 500)


class _Hosts:
    """Refuse requests whose Host header is not one of `allowed` (DNS rebinding)."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = {h.lower() for h in allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host", "").lower()
            name = host.split("]")[0] + "]" if host.startswith("[") else host.rsplit(":", 1)[0]
            if name not in self.allowed:
                await _json({"error": f"unknown host {host!r}"}, 421)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host`:`port` (0: any free port); UsageError when it cannot be."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def server(app: ASGIApp) -> Any:
    """A uvicorn server for `app` (``.run(sockets=[bind(...)])``; ``should_exit`` stops it)."""
    import uvicorn

    return uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    )


def run(
    lake: Lake,
    host: str,
    port: int,
    token: str | None,
    config: Config | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve `lake` until Ctrl-C. Without a token only a loopback host is allowed."""
    if not (token or "").strip() and not is_loopback(host):
        raise UsageError(
            f"refusing to serve on {host} without a token: set FLYWHEEL_SERVE_TOKEN, or use "
            "--host 127.0.0.1"
        )
    sock = bind(host, port)
    allowed = LOOPBACK_NAMES if is_loopback(host) else None
    app = create_app(lake, token, config, allowed_hosts=allowed)
    if on_ready:
        on_ready(url_of(sock))
    server(app).run(sockets=[sock])
