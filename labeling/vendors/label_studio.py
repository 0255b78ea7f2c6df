"""`label-studio`: the Label Studio adapter, over its REST API with `requests` (issue 4).

Measured facts it relies on (label-studio 1.23.2, see the team's notes):

- ``POST /api/projects`` creates the project; it is found again by its title.
- ``POST /api/projects/ID/import?return_task_ids=true`` imports a list of tasks in one call and
  answers their ids; Label Studio does **not** deduplicate, so every task stores its key
  (``scene_id`` and ``batch_id`` in its data) and `find` looks keys up before a resubmission.
- ``GET /api/tasks`` takes a data-manager filter in ``query=`` (JSON); `find` filters on
  ``data.batch_id`` (one request per batch, paged, instead of one per scene) and matches the
  scene ids; `changes` filters on ``updated_at``/``completed_at`` after the cursor and reads
  each labeled task's annotations.

Auth: a legacy token (``Authorization: Token …``, needs ``--enable-legacy-api-token``) or a
personal access token (a JWT refresh token: exchanged at ``/api/token/refresh/`` for an access
token, sent as ``Bearer``, renewed when it expires or is refused). The key never appears in a
message or a repr.

>>> LabelStudioVendor("http://127.0.0.1:8080", "s3cret")
LabelStudioVendor(url='http://127.0.0.1:8080', api_key='***')
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

import requests

from flywheel.errors import TransientError, VendorError
from ingest.scenes import TAGS
from labeling.vendors.base import LABELED, SUBMITTED, TaskSpec, TaskUpdate, Vendor, split_key

SCENARIOS = (*TAGS, "other")
# task fields shown to the annotator, in order
TEXT_FIELDS = ("description", "scene_id", "log_id", "start", "end", "tags_text")
PAGE_SIZE = 1000
TASK_FIELDS = "id,data,created_at,updated_at,completed_at,is_labeled,total_annotations"


def label_config(keyframes: bool = False) -> str:
    """The project's labeling config: scenario choices, a note, the task's text fields, and
    rectangles on the keyframe only when `keyframes` (then every task must carry ``image``).

    >>> "$image" in label_config(), "$image" in label_config(keyframes=True)
    (False, True)
    """
    texts = "\n".join(f'    <Text name="{name}" value="${name}"/>' for name in TEXT_FIELDS)
    choices = "\n".join(f"    <Choice value={quoteattr(s)}/>" for s in SCENARIOS)
    image = ""
    if keyframes:
        image = (
            '  <Image name="keyframe" value="$image"/>\n'
            '  <RectangleLabels name="objects" toName="keyframe">\n'
            + "\n".join(
                f"    <Label value={quoteattr(v)}/>"
                for v in ("vehicle", "pedestrian", "cyclist", "animal", "unknown")
            )
            + "\n  </RectangleLabels>\n"
        )
    return (
        "<View>\n"
        '  <View name="scene">\n'
        f"{texts}\n"
        "  </View>\n"
        f"{image}"
        '  <Header value="Scenario"/>\n'
        '  <Choices name="scenario" toName="description" choice="multiple">\n'
        f"{choices}\n"
        "  </Choices>\n"
        '  <Header value="Note"/>\n'
        '  <TextArea name="note" toName="description" rows="3" maxSubmissions="1"/>\n'
        "</View>\n"
    )


class LabelStudioVendor(Vendor):
    """Label Studio at `url`, authenticated with `api_key` (legacy token or PAT)."""

    name = "label-studio"

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        project_title: str = "flywheel scenes",
        price_per_task: float = 0.08,
        sla: dt.timedelta = dt.timedelta(hours=24),
        chunk_size: int = 1000,
        timeout: float = 30.0,
        keyframes: bool = False,
        session: requests.Session | None = None,
    ) -> None:
        if not url or not api_key:
            raise VendorError("Label Studio needs a URL and an API key")
        self.url = url.rstrip("/")
        self._key = api_key
        self.project_title = project_title
        self.price_per_task = float(price_per_task)
        self.sla = sla
        self.chunk_size = int(chunk_size)
        self.timeout = float(timeout)
        self.keyframes = keyframes
        self.session = session or requests.Session()
        self._project_id: str | None = None
        self._jwt = _is_jwt(api_key)
        self._access: str | None = None
        self._access_expires = 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, api_key='***')"

    @property
    def location(self) -> str:
        return f"Label Studio at {self.url}"

    # -- HTTP --------------------------------------------------------------------------------
    def _auth(self, renew: bool = False) -> str:
        if not self._jwt:
            return f"Token {self._key}"
        if renew or self._access is None or time.time() > self._access_expires - 15:
            body = self._send("POST", "/api/token/refresh/", None, {"refresh": self._key})
            self._access = body["access"]
            self._access_expires = _jwt_expiry(self._access) or time.time() + 240
        return f"Bearer {self._access}"

    def _request(self, method: str, path: str, params=None, body=None) -> Any:
        try:
            return self._send(method, path, params, body, self._auth())
        except _Unauthorized:
            if not self._jwt:
                raise self._denied(401) from None
        # an access token may expire between our check and the server's: renew once
        try:
            return self._send(method, path, params, body, self._auth(renew=True))
        except _Unauthorized:
            raise self._denied(401) from None

    def _send(self, method, path, params, body, auth: str | None = None) -> Any:
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
                timeout=self.timeout,
            )
        except requests.Timeout:
            raise TransientError(
                f"{self.location}: {method} {path} timed out after {self.timeout:g} s",
                vendor=self.url,
            ) from None
        except requests.ConnectionError as error:
            raise TransientError(
                f"{self.location}: {method} {path} could not connect ({type(error).__name__})",
                vendor=self.url,
            ) from None
        status = response.status_code
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
                f"{self.location}: {method} {path} answered {status}: {_detail(response)}",
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

    # -- the interface -----------------------------------------------------------------------
    def ensure_project(self) -> str:
        if self._project_id is not None:
            return self._project_id
        page = 1
        while True:
            body = self._request(
                "GET",
                "/api/projects",
                {"title": self.project_title, "page": page, "page_size": 100},
            )
            projects = body.get("results", []) if isinstance(body, dict) else body
            for project in projects:
                if project.get("title") == self.project_title:
                    self._project_id = str(project["id"])
                    return self._project_id
            if not isinstance(body, dict) or not body.get("next"):
                break
            page += 1
        created = self._request(
            "POST",
            "/api/projects",
            body={
                "title": self.project_title,
                "description": "Scenes mined by Flywheel",
                "label_config": label_config(self.keyframes),
            },
        )
        self._project_id = str(created["id"])
        return self._project_id

    def submit(self, tasks: Sequence[TaskSpec]) -> list[str]:
        if not tasks:
            raise VendorError(f"{self.location}: nothing to import (empty task list)")
        project = self.ensure_project()
        ids: list[str] = []
        for start in range(0, len(tasks), self.chunk_size):
            chunk = tasks[start : start + self.chunk_size]
            body = self._request(
                "POST",
                f"/api/projects/{project}/import",
                {"return_task_ids": "true"},
                [{"data": self._task_data(t), "meta": {"key": t.key}} for t in chunk],
            )
            got = [str(i) for i in body.get("task_ids") or []]
            if len(got) != len(chunk):
                raise VendorError(
                    f"{self.location}: import answered {len(got)} task ids for {len(chunk)} tasks",
                    vendor=self.url,
                )
            ids.extend(got)
        return ids

    def _task_data(self, task: TaskSpec) -> dict[str, Any]:
        data = {k: v for k, v in task.data.items() if v is not None}
        data["scene_id"], data["batch_id"] = task.scene_id, task.batch_id
        tags = data.get("tags") or []
        data["tags_text"] = ", ".join(map(str, tags)) if tags else "no tags"
        for name in TEXT_FIELDS:
            data.setdefault(name, "")
        if self.keyframes:
            data.setdefault("image", "")
        return data

    def find(self, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        by_batch: dict[str, set[str]] = defaultdict(set)
        for task_key in keys:
            batch_id, scene_id = split_key(task_key)
            by_batch[batch_id].add(scene_id)
        found: dict[str, str] = {}
        for batch_id, scenes in by_batch.items():
            # one filtered, paged listing per batch rather than one request per scene
            query = _filter("filter:tasks:data.batch_id", "equal", "String", batch_id)
            for task in self._tasks(query, "id,data"):
                data = task.get("data") or {}
                if data.get("batch_id") == batch_id and data.get("scene_id") in scenes:
                    found.setdefault(f"{batch_id}/{data['scene_id']}", str(task["id"]))
        return found

    def changes(self, since: str | None) -> tuple[list[TaskUpdate], str | None]:
        query = None
        if since:
            query = {
                "filters": {
                    "conjunction": "or",
                    "items": [
                        _item(f"filter:tasks:{column}", "greater", "Datetime", _stamp(since))
                        for column in ("updated_at", "completed_at")
                    ],
                }
            }
        latest = _parse(since) if since else None
        tasks = []
        for task in self._tasks(query, TASK_FIELDS):
            data = task.get("data") or {}
            if not data.get("scene_id") or not data.get("batch_id"):
                continue  # not a Flywheel task
            tasks.append(task)
            for column in ("updated_at", "completed_at"):
                if task.get(column):
                    moment = _parse(task[column])
                    latest = moment if latest is None or moment > latest else latest
        annotated = self._annotations(
            [t["id"] for t in tasks if t.get("is_labeled") or t.get("total_annotations")]
        )
        users = self._users() if annotated else {}
        updates: list[TaskUpdate] = []
        for task in tasks:
            data = task["data"]
            annotations = annotated.get(task["id"], [])
            annotator = result = completed = None
            if annotations:
                first = min(annotations, key=lambda a: a.get("created_at") or "")
                last = max(annotations, key=lambda a: a.get("updated_at") or "")
                result = last.get("result")
                who = last.get("completed_by")
                annotator = users.get(who, None if who is None else str(who))
                completed = _parse(task.get("completed_at") or first["created_at"])
            updates.append(
                TaskUpdate(
                    external_id=str(task["id"]),
                    key=f"{data['batch_id']}/{data['scene_id']}",
                    status=LABELED if completed else SUBMITTED,
                    created_at=_parse(task["created_at"]),
                    completed_at=completed,
                    annotator=annotator,
                    result=result,
                )
            )
        if latest is None:
            return updates, since
        # the vendor's clock, a second back: a change on the cursor's own tick is re-read
        return updates, (latest - dt.timedelta(seconds=1)).isoformat()

    def _annotations(self, ids: list[int], chunk: int = 200) -> dict[int, list[dict]]:
        """Annotations (not cancelled) of tasks `ids`, through the export (one call per chunk)."""
        project = self.ensure_project()
        out: dict[int, list[dict]] = {}
        for start in range(0, len(ids), chunk):
            params = {"exportType": "JSON", "ids[]": ids[start : start + chunk]}
            for task in self._request("GET", f"/api/projects/{project}/export", params) or []:
                kept = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
                if kept:
                    out[task["id"]] = kept
        return out

    def _users(self) -> dict[Any, str]:
        """User id -> email, to name annotators (empty when the listing is not allowed)."""
        try:
            users = self._request("GET", "/api/users")
        except VendorError as error:
            if isinstance(error, TransientError):
                raise
            return {}
        users = users.get("results", []) if isinstance(users, dict) else users or []
        return {u["id"]: u.get("email") or u.get("username") or str(u["id"]) for u in users}

    def _tasks(self, query: dict | None, fields: str) -> Iterator[dict]:
        project = self.ensure_project()
        page, seen = 1, 0
        while True:
            params = {"project": project, "page": page, "page_size": PAGE_SIZE, "include": fields}
            if query is not None:
                params["query"] = json.dumps(query)
            try:
                body = self._request("GET", "/api/tasks", params)
            except VendorError as error:
                if getattr(error, "status", None) == 404 and page > 1:
                    return  # past the last page
                raise
            tasks = body.get("tasks", [])
            yield from tasks
            seen += len(tasks)
            if not tasks or seen >= int(body.get("total", 0)):
                return
            page += 1


class _Unauthorized(Exception):
    """Internal: a 401/403 that a renewed access token may cure."""


def _item(column: str, operator: str, kind: str, value: Any) -> dict:
    return {"filter": column, "operator": operator, "type": kind, "value": value}


def _filter(column: str, operator: str, kind: str, value: Any) -> dict:
    return {"filters": {"conjunction": "and", "items": [_item(column, operator, kind, value)]}}


def _stamp(cursor: str) -> str:
    """A cursor in the one format Label Studio's Datetime filter parses (UTC, with a Z)."""
    return _parse(cursor).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(stamp: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(stamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


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
        return json.dumps(detail)[:300]
    return json.dumps(body)[:300]


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
