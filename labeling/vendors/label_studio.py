"""`label-studio`: the Label Studio adapter, over its REST API with `requests`.

Measured facts it relies on (label-studio 1.23.2, see the team's notes and docs/labeling.md):

- ``POST /api/projects`` creates the project; it is found again by its title.
- ``POST /api/projects/ID/import?return_task_ids=true`` imports a list of tasks in one call and
  answers their ids; Label Studio does **not** deduplicate, so every task stores its key
  (``scene_id`` and ``batch_id`` in its data) and `find` looks keys up before a resubmission.
- ``GET /api/tasks`` takes a data-manager filter in ``query=`` (JSON); listings here page by
  task id (``id > last``), which no concurrent insert or delete can shift. `find` filters on
  ``data.batch_id`` (one listing per batch, not one request per scene) and matches scene ids.
- `changes` lists the tasks whose ``updated_at`` or ``completed_at`` is at or after the cursor,
  with their annotations in the same response (``fields=all``). The server's cost is per task
  and serialised (one Python process): ~0.3 ms a task plus ~0.7 ms per labeled one; a full read
  of a mostly labeled project uses one export snapshot instead (~0.9 ms a task, flat). Parallel
  requests buy nothing against that server, so there are none.
- Every read first asks for the newest ``updated_at`` (one cheap request): the next cursor
  starts there, since a read of several pages is not a snapshot and a change made meanwhile on
  an earlier page carries an older stamp than later pages. The cursor also keeps the tasks
  already seen at or after it (id -> stamp), so a sync with nothing new lists next to nothing.

HTTP (auth, errors, paging by task id) is the client's, labeling.vendors.label_studio_api: this
module turns Flywheel's tasks into Label Studio's and its annotations back into task updates.

>>> LabelStudioVendor("http://127.0.0.1:8080", "s3cret")
LabelStudioVendor(url='http://127.0.0.1:8080', api_key='***')
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

import requests

from flywheel.errors import TransientError, VendorError
from flywheel.schemas import DETECTED_TAGS
from labeling.vendors.base import (
    LABELED,
    SUBMITTED,
    Cursor,
    TaskSpec,
    TaskUpdate,
    Vendor,
    split_key,
)
from labeling.vendors.label_studio_api import LabelStudioAPI, filter_item, one_filter

# the scenario choices offered to annotators: the tags ingest detects (flywheel.schemas), "other"
SCENARIOS = (*DETECTED_TAGS, "other")
# task fields shown to the annotator, in order
TEXT_FIELDS = ("description", "scene_id", "log_id", "start", "end", "tags_text")
# A change read: the task and its annotations. Flex fields applies `include` at every level, so
# the annotation's own fields (result, completed_by, was_cancelled) are named here too.
CHANGE_FIELDS = (
    "id,data,created_at,updated_at,completed_at,annotations,result,completed_by,was_cancelled"
)
# what a registered webhook is called for: annotation changes (labels) and new tasks
WEBHOOK_ACTIONS = (
    "ANNOTATION_CREATED",
    "ANNOTATIONS_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATIONS_DELETED",
    "TASKS_CREATED",
)
# A full read takes one export snapshot when at least this share of tasks is labeled (see the
# costs above: 0.9 ms flat vs 0.3 + 0.7 ms per labeled task), and the project is small enough
# for one JSON document in memory.
SNAPSHOT_MIN_LABELED = 0.8
SNAPSHOT_MAX_TASKS = 100_000
SNAPSHOT_S_PER_TASK = 0.005  # the snapshot request's timeout per task (5x what it takes here)


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
        self.api = LabelStudioAPI(url, api_key, timeout=timeout, session=session)
        self.url = self.api.url
        self.project_title = project_title
        self.price_per_task = float(price_per_task)
        self.sla = sla
        self.chunk_size = int(chunk_size)
        self.timeout = self.api.timeout
        self.keyframes = keyframes
        self._project_id: str | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.api.scrub(self.url)!r}, api_key='***')"

    @property
    def location(self) -> str:
        return self.api.location

    # -- the interface -----------------------------------------------------------------------
    def ensure_project(self) -> str:
        if self._project_id is not None:
            return self._project_id
        page = 1
        while True:
            body = self.api.request(
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
        created = self.api.request(
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
            body = self.api.request(
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
            query = one_filter("filter:tasks:data.batch_id", "equal", "String", batch_id)
            for task in self._tasks(query["filters"], "id,data"):
                data = task.get("data") or {}
                if data.get("batch_id") == batch_id and data.get("scene_id") in scenes:
                    found.setdefault(f"{batch_id}/{data['scene_id']}", str(task["id"]))
        return found

    def changes(self, since: Cursor | None) -> tuple[list[TaskUpdate], Cursor | None]:
        start, seen = _read_cursor(since)
        newest = self._newest_update()  # before the read: see the module docstring
        if newest is None:
            return [], since  # no task at all yet
        total = self._snapshot_size() if start is None else 0
        if total:
            tasks = self._snapshot(total)
        else:
            tasks = self._tasks(_changed_since(start), CHANGE_FIELDS, all_fields=True)
        changed, now_seen = [], {}
        for task in tasks:
            stamp = _task_stamp(task)
            if stamp >= newest:
                now_seen[str(task["id"])] = _stamp_text(stamp)
            if seen.get(str(task["id"])) == _stamp_text(stamp):
                continue  # reported by the last sync in this very state
            data = task.get("data") or {}
            if data.get("scene_id") and data.get("batch_id"):  # else not a Flywheel task
                changed.append(task)
        users = self._users() if any(t.get("annotations") for t in changed) else {}
        updates = [_update(task, users) for task in changed]
        return updates, {"at": _stamp_text(newest), "seen": now_seen}

    def _newest_update(self) -> dt.datetime | None:
        """The newest ``updated_at`` of the project's tasks (None: no task)."""
        project = self.ensure_project()
        query = {"ordering": ["-tasks:updated_at"]}
        params = {"project": project, "page": 1, "page_size": 1, "include": "id,updated_at"}
        body = self.api.request("GET", "/api/tasks", {**params, "query": json.dumps(query)})
        tasks = body.get("tasks", []) if isinstance(body, dict) else []
        return _parse(tasks[0]["updated_at"]) if tasks else None

    def _snapshot_size(self) -> int:
        """The project's task count when a full read is cheaper as one export snapshot than as
        a listing (mostly labeled, not too big), else 0."""
        project = self.api.request("GET", f"/api/projects/{self.ensure_project()}") or {}
        total = int(project.get("task_number") or 0)
        labeled = int(project.get("num_tasks_with_annotations") or 0)
        pays = 0 < total <= SNAPSHOT_MAX_TASKS and labeled >= SNAPSHOT_MIN_LABELED * total
        return total if pays else 0

    def _snapshot(self, total: int) -> list[dict]:
        """Every task (about `total`) with its annotations, through one export snapshot
        (deleted after)."""
        base = f"/api/projects/{self.ensure_project()}/exports"
        body = {
            "title": f"flywheel sync {uuid.uuid4().hex[:8]}",
            # ids instead of nested objects, and no history: less for the server to build
            "serialization_options": {
                "drafts": {"only_id": True},
                "predictions": {"only_id": True},
                "annotations__completed_by": {"only_id": True},
                "include_annotation_history": False,
            },
        }
        wait = max(self.timeout, SNAPSHOT_S_PER_TASK * total)
        export = self.api.request("POST", base + "/", body=body, timeout=wait)
        try:
            # Label Studio builds it in the request, or in a worker when it has Redis: then poll
            deadline = time.monotonic() + wait
            while export.get("status") != "completed":
                if export.get("status") == "failed":
                    raise VendorError(
                        f"{self.location}: the export snapshot for a full sync failed; rerun "
                        "`flywheel label sync --full`",
                        vendor=self.url,
                    )
                if time.monotonic() > deadline:
                    raise TransientError(
                        f"{self.location}: the export snapshot was not ready after {wait:.0f} s",
                        vendor=self.url,
                    )
                time.sleep(0.5)
                export = self.api.request("GET", f"{base}/{export['id']}")
            tasks = self.api.request(
                "GET", f"{base}/{export['id']}/download", {"exportType": "JSON"}, timeout=wait
            )
        finally:
            with contextlib.suppress(VendorError):  # a leftover snapshot costs only disk
                self.api.request("DELETE", f"{base}/{export['id']}")
        return tasks or []

    def register_webhook(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        actions: Sequence[str] = WEBHOOK_ACTIONS,
    ) -> str:
        """Have Label Studio call `url` when the project's annotations change; the webhook's id.

        Idempotent: the project's existing webhook for the same URL is updated in place (new
        headers, e.g. a rotated secret), never duplicated. Sends no payload (the receiver only
        needs the nudge; the sync reads the changes). Header values never appear in an error.

        Not run as a doctest: it needs a running Label Studio (the labeling tests start one).

        >>> vendor.register_webhook("https://ci.example/hook", {"X-Key": k})  # doctest: +SKIP
        '3'
        """
        project = self.ensure_project()
        body = {
            "url": url,
            "project": int(project),
            "send_payload": False,
            "send_for_all_actions": False,
            "is_active": True,
            "headers": dict(headers or {}),
            "actions": list(actions),  # always sent: a PATCH without it empties the list
        }
        secrets = [str(v) for v in (headers or {}).values() if v]
        try:
            hooks = self.api.request("GET", "/api/webhooks/", {"project": project}) or []
            if isinstance(hooks, dict):
                hooks = hooks.get("results", [])
            for hook in hooks:
                if hook.get("url") == url and str(hook.get("project")) == project:
                    self.api.request("PATCH", f"/api/webhooks/{hook['id']}/", body=body)
                    return str(hook["id"])
            return str(self.api.request("POST", "/api/webhooks/", body=body)["id"])
        except VendorError as error:  # a validation error may echo a header back
            message = self.api.scrub(str(error), secrets)
            if message == str(error):
                raise
            raise type(error)(message, **error.attrs) from None

    def _tasks(self, filters: dict | None, fields: str, *, all_fields: bool = False):
        """The project's tasks matching `filters`, in id order (the client pages them)."""
        return self.api.tasks(self.ensure_project(), filters, fields, all_fields=all_fields)

    def _users(self) -> dict[Any, str]:
        """User id -> email, to name annotators (empty when the listing is not allowed)."""
        try:
            users = self.api.request("GET", "/api/users")
        except VendorError as error:
            if isinstance(error, TransientError):
                raise
            return {}
        users = users.get("results", []) if isinstance(users, dict) else users or []
        return {u["id"]: u.get("email") or u.get("username") or str(u["id"]) for u in users}


def _changed_since(start: dt.datetime | None) -> dict | None:
    """Tasks updated or completed at or after `start` (None: every task)."""
    if start is None:
        return None
    return {
        "conjunction": "or",
        "items": [
            # completed_at too: annotations created in bulk leave a task's updated_at alone
            filter_item(
                f"filter:tasks:{column}", "greater_or_equal", "Datetime", _stamp_text(start)
            )
            for column in ("updated_at", "completed_at")
        ],
    }


def _read_cursor(since: Cursor | None) -> tuple[dt.datetime | None, dict[str, str]]:
    """(start, seen) of a cursor: seen maps task ids to the stamp they were last reported at.

    Older cursors were a plain ISO time (already a second early): read from there, seen none.
    """
    if isinstance(since, str):
        return _parse(since), {}
    if not isinstance(since, dict) or not since.get("at"):
        return None, {}  # none, or unreadable: read everything (reporting twice is harmless)
    seen = {str(k): _stamp_text(_parse(v)) for k, v in (since.get("seen") or {}).items()}
    return _parse(since["at"]), seen


def _kept(task: dict) -> list[dict]:
    """The task's annotations that count: a skipped ("cancelled") one labels nothing."""
    return [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]


def _completed(task: dict) -> dt.datetime | None:
    """When the task was labeled: Label Studio's completed_at (its newest annotation's creation)
    when it says so, else (an export, or overlap > 1) the newest kept annotation's creation."""
    if task.get("completed_at"):
        return _parse(task["completed_at"])
    kept = _kept(task)
    return _parse(max(kept, key=lambda a: a.get("id") or 0)["created_at"]) if kept else None


def _task_stamp(task: dict) -> dt.datetime:
    """The task's last change: the later of updated_at and completed_at (what `changes` filters)."""
    stamp = _parse(task["updated_at"])
    completed = _completed(task)
    return max(stamp, completed) if completed else stamp


def _update(task: dict, users: dict[Any, str]) -> TaskUpdate:
    data = task["data"]
    kept = _kept(task)
    annotator = result = completed = None
    if kept:
        last = max(kept, key=lambda a: (a.get("updated_at") or "", a.get("id") or 0))
        result = last.get("result")
        who = last.get("completed_by")
        if isinstance(who, dict):  # an export may nest the user
            who = who.get("id")
        annotator = users.get(who, None if who is None else str(who))
        completed = _completed(task)
    return TaskUpdate(
        external_id=str(task["id"]),
        key=f"{data['batch_id']}/{data['scene_id']}",
        status=LABELED if completed else SUBMITTED,
        created_at=_parse(task["created_at"]),
        completed_at=completed,
        annotator=annotator,
        result=result,
    )


def _stamp_text(moment: dt.datetime) -> str:
    """A time in the one format Label Studio's Datetime filter parses (UTC, µs, with a Z)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(stamp: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(stamp)  # Python 3.11 reads a trailing Z
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
