"""The Label Studio REST client under the `label-studio` vendor (labeling.vendors.label_studio):
requests, auth, errors, paging. It knows HTTP and Label Studio's endpoints, not Flywheel's tasks.

Auth: a legacy token (``Authorization: Token …``, needs ``--enable-legacy-api-token``) or a
personal access token (a JWT refresh token: exchanged at ``/api/token/refresh/`` for an access
token, sent as ``Bearer``, renewed when it expires or is refused). The key never appears in a
message or a repr, and neither does a password in the URL (``https://user:pass@host``) or
whatever the server echoes back (an ``Authorization`` header in an error body): every text
from the server passes through `flywheel.redact.redact` with the keys this vendor holds.

Errors: a timeout, a refused connection, 429 and 5xx are `TransientError` (with the server's
Retry-After), for the callers' retries (labeling._retry); any other refusal is a `VendorError`.

Task listings page by task id (``id > last``), which no concurrent insert or delete can shift.

>>> LabelStudioAPI("http://127.0.0.1:8080", "s3cret")
LabelStudioAPI(url='http://127.0.0.1:8080', api_key='***')
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

import requests

from flywheel.errors import TransientError, VendorError
from flywheel.redact import redact

PAGE_SIZE = 1000


class LabelStudioAPI:
    """Label Studio's REST API at `url`, authenticated with `api_key` (legacy token or PAT)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        session: requests.Session | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._key = api_key
        self.timeout = float(timeout)
        self.session = session or requests.Session()
        self._jwt = _is_jwt(api_key)
        self._access: str | None = None
        self._access_expires = 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.scrub(self.url)!r}, api_key='***')"

    @property
    def location(self) -> str:
        return f"Label Studio at {self.scrub(self.url)}"

    def scrub(self, text: str, also: Sequence[str] = ()) -> str:
        """`text` with every credential masked: the patterns, and the keys this client holds."""
        return redact(text, also=(self._key, getattr(self, "_access", None), *also))

    def request(
        self, method: str, path: str, params=None, body=None, timeout: float | None = None
    ) -> Any:
        """One call: the answer's JSON (None when empty); a refused access token is renewed
        once."""
        try:
            return self._send(method, path, params, body, self._auth(), timeout)
        except _Unauthorized:
            if not self._jwt:
                raise self._denied(401) from None
        # an access token may expire between our check and the server's: renew once
        try:
            return self._send(method, path, params, body, self._auth(renew=True), timeout)
        except _Unauthorized:
            raise self._denied(401) from None

    def tasks(
        self,
        project: str,
        filters: dict | None,
        fields: str,
        *,
        all_fields: bool = False,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[dict]:
        """The tasks of `project` matching `filters` (data-manager form), in id order.

        Pages by id (``id > last``) rather than by page number: a task inserted or deleted
        meanwhile cannot shift one from page to page unseen.
        """
        after = 0
        while True:
            query = {"filters": _after_id(filters, after), "ordering": ["tasks:id"]}
            params = {
                "project": project,
                "page": 1,
                "page_size": page_size,
                "include": fields,
                "resolve_uri": "false",  # data as stored: no storage URL signing per task
                "query": json.dumps(query),
            }
            if all_fields:
                params["fields"] = "all"  # annotations are sent only with every field
            body = self.request("GET", "/api/tasks", params)
            tasks = body.get("tasks", []) if isinstance(body, dict) else []
            yield from tasks
            # `total` counts what is left: a server capping page_size still pages to the end
            if not tasks or len(tasks) >= int(body.get("total", 0)):
                return
            after = max(int(t["id"]) for t in tasks)

    def _auth(self, renew: bool = False) -> str:
        if not self._jwt:
            return f"Token {self._key}"
        if renew or self._access is None or time.time() > self._access_expires - 15:
            body = self._send("POST", "/api/token/refresh/", None, {"refresh": self._key})
            self._access = body["access"]
            self._access_expires = _jwt_expiry(self._access) or time.time() + 240
        return f"Bearer {self._access}"

    def _send(
        self, method, path, params, body, auth: str | None = None, timeout: float | None = None
    ) -> Any:
        timeout = timeout or self.timeout
        headers = {"Accept": "application/json"}
        if auth:
            headers["Authorization"] = auth
        try:
            response = self.session.request(
                method,
                self.url + path,
                params=params,
                json=body,
                headers=headers,
                timeout=timeout,
            )
        except requests.Timeout:
            raise TransientError(
                f"{self.location}: {method} {path} timed out after {timeout:g} s",
                vendor=self.url,
            ) from None
        except requests.ConnectionError as error:
            raise TransientError(
                f"{self.location}: {method} {path} could not connect ({type(error).__name__})",
                vendor=self.url,
            ) from None
        status = response.status_code
        # masked whole, then cut: a cut first could leave half a key that no longer matches
        detail = self.scrub(_detail(response))[:300] if status >= 400 else ""
        if status == 403 and "URL was not allowed" in detail:
            # not the credentials: Label Studio's SSRF guard refuses a loopback/private URL
            raise VendorError(
                f"{self.location}: {method} {path} refused the URL (Label Studio blocks local and "
                "private addresses; a loopback receiver needs the server started with "
                "LABEL_STUDIO_SSRF_PROTECTION_ENABLED=false)",
                vendor=self.url,
                status=status,
            )
        if status in (401, 403):
            if auth is None or path == "/api/token/refresh/":
                raise self._denied(status)
            raise _Unauthorized()
        if status == 429 or status >= 500:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            raise TransientError(
                f"{self.location}: {method} {path} answered {status}",
                vendor=self.url,
                status=status,
                retry_after=retry_after,
            )
        if status >= 400:
            raise VendorError(
                f"{self.location}: {method} {path} answered {status}: {detail}",
                vendor=self.url,
                status=status,
            )
        if status == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as error:
            raise VendorError(
                f"{self.location}: {method} {path} answered {status} with no JSON "
                "(is the URL Label Studio's?)",
                vendor=self.url,
            ) from error

    def _denied(self, status: int) -> VendorError:
        return VendorError(
            f"{self.location} refused the credentials ({status}); check LABEL_STUDIO_API_KEY "
            "(a legacy token needs --enable-legacy-api-token; a personal access token is a JWT)",
            vendor=self.url,
            status=status,
        )


class _Unauthorized(Exception):
    """Internal: a 401/403 that a renewed access token may cure."""


def filter_item(column: str, operator: str, kind: str, value: Any) -> dict:
    """One condition of a data-manager filter."""
    return {"filter": column, "operator": operator, "type": kind, "value": value}


def one_filter(column: str, operator: str, kind: str, value: Any) -> dict:
    """A data-manager query of one condition."""
    return {
        "filters": {"conjunction": "and", "items": [filter_item(column, operator, kind, value)]}
    }


def _after_id(filters: dict | None, after: int) -> dict:
    """`filters` restricted to tasks with an id above `after` (keyset paging)."""
    keyset = filter_item("filter:tasks:id", "greater", "Number", after)
    if not filters or not filters.get("items"):
        return {"conjunction": "and", "items": [keyset]}
    if filters["conjunction"] == "and":
        return {"conjunction": "and", "items": [*filters["items"], keyset]}
    # "or": the restriction joins each alternative (a child filter is AND-ed with its parent)
    return {"conjunction": "or", "items": [{**i, "child_filter": keyset} for i in filters["items"]]}


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime

        return max(0.0, (parsedate_to_datetime(value) - dt.datetime.now(dt.UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason or "no detail"
    if isinstance(body, dict):
        detail = body.get("validation_errors") or body.get("detail") or body
        return json.dumps(detail)
    return json.dumps(body)


def _is_jwt(value: str) -> bool:
    parts = value.split(".")
    return len(parts) == 3 and value.startswith("eyJ")


def _jwt_expiry(token: str) -> float | None:
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, KeyError, ValueError, TypeError):
        return None
