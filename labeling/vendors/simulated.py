"""`simulated`: an in-process labeling vendor for the demo and for tests of the scheduling logic.

Its "cloud" lives in a folder (by default ``<lake>/_vendors/simulated/``) so that a
``label submit`` and a later ``label sync`` in another process see the same tasks:

- ``project.json``: the project (created by `ensure_project`);
- ``tasks/<seq>.jsonl``: one file per accepted `submit` call, written atomically;
- ``clock.json``: how far the vendor's clock was advanced (`advance`).

A task's turnaround is drawn once from a lognormal distribution (median and spread
configurable), deterministically from the seed and the task's key, so a task completes at
``created_at + turnaround`` on the vendor's clock: nothing runs in the background. The label
is derived from the scene's tags (the generator's planted events show up there) in Label
Studio's result format, with a made-up annotator.

Failures can be injected (`fail_next`, `fail_after_accept`), and the clock is controllable
(`now=` a callable, and `advance`), so tests and the demo can make completions happen.

>>> import tempfile
>>> v = SimulatedVendor(tempfile.mkdtemp(), now=lambda: dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
>>> v.submit([TaskSpec("b1", "s1", {"tags": ["hard_brake"]})])
['1']
>>> v.advance(dt.timedelta(days=3)); [u.status for u in v.changes(None)[0]]
['labeled']
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import math
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from flywheel.errors import TransientError, VendorError
from flywheel.lake import Lake, cache_dir
from flywheel.schemas import DETECTED_TAGS
from labeling.vendors.base import LABELED, SUBMITTED, TaskSpec, TaskUpdate, Vendor

ANNOTATORS = ("ana.k", "bo.li", "chen.w", "dara.o", "eli.m", "farah.s")
# the scenario choices offered to annotators: the tags ingest detects (plus "other")
SCENARIOS = DETECTED_TAGS
CLASSES = (*SCENARIOS, "other")


def _fault(fault: dict[str, Any]) -> dict[str, Any]:
    """A fault of [labeling.simulated] (flywheel.config checked it), its time parsed."""
    after = fault.get("after")
    if isinstance(after, str):
        after = dt.datetime.fromisoformat(after)
    return {
        "kind": fault["kind"],
        "classes": tuple(fault.get("classes") or ()),
        "annotator": fault.get("annotator"),
        "after": after,
    }


def state_dir(lake_root: str | os.PathLike) -> Path:
    """Where the simulated vendor keeps its state for a lake: in the lake's folder, or for a
    lake on an object store in this machine's folder for it (a simulator needs no more)."""
    lake = lake_root if isinstance(lake_root, Lake) else Lake(lake_root)
    base = lake.root if lake.local else cache_dir(lake.uri)
    return base / "_vendors" / "simulated"


class SimulatedVendor(Vendor):
    """A vendor whose state lives in `root` and whose time is `now()` plus `advance`s."""

    name = "simulated"

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        price_per_task: float = 0.08,
        sla: dt.timedelta = dt.timedelta(hours=24),
        turnaround_median: dt.timedelta = dt.timedelta(hours=4),
        turnaround_sigma: float = 0.8,
        error_rate: float = 0.0,
        seed: int = 0,
        faults: Sequence[dict[str, Any]] = (),
        chunk_size: int = 500,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.root = Path(root)
        self.price_per_task = float(price_per_task)
        self.sla = sla
        self.turnaround_median = turnaround_median
        self.turnaround_sigma = float(turnaround_sigma)
        self.error_rate = float(error_rate)
        self.seed = int(seed)
        self.faults = [_fault(f) for f in faults]
        self.chunk_size = int(chunk_size)
        self._base_now = now or (lambda: dt.datetime.now(dt.UTC))
        self._fail_next: list[tuple[set[str], BaseException]] = []
        self._fail_after_accept: list[BaseException] = []
        self.calls: dict[str, int] = {}

    @classmethod
    def for_lake(cls, lake_root: str | os.PathLike, **options: Any) -> SimulatedVendor:
        """The simulated vendor of a lake: ``SimulatedVendor.for_lake(lake.root)``."""
        return cls(state_dir(lake_root), **options)

    @property
    def location(self) -> str:
        return f"simulated vendor at {self.root}"

    # -- the clock ---------------------------------------------------------------------------
    def now(self) -> dt.datetime:
        """The vendor's time: the base clock plus every `advance` (persisted, all processes)."""
        return self._base_now() + dt.timedelta(seconds=self._offset())

    def advance(self, delta: dt.timedelta) -> None:
        """Move the vendor's clock forward by `delta` (seen by every process using `root`)."""
        with self._lock():
            offset = self._offset() + delta.total_seconds()
            _write_atomic(self.root / "clock.json", json.dumps({"offset_s": offset}))

    def _offset(self) -> float:
        path = self.root / "clock.json"
        return json.loads(path.read_text())["offset_s"] if path.exists() else 0.0

    # -- injected failures -------------------------------------------------------------------
    def fail_next(
        self,
        n: int = 1,
        calls: Sequence[str] = ("ensure_project", "submit", "find", "changes"),
        error: BaseException | None = None,
    ) -> None:
        """Make the next `n` matching calls fail (default: TransientError, as a 503 would)."""
        for _ in range(n):
            self._fail_next.append(
                (set(calls), error or TransientError(f"{self.location}: 503 (injected)"))
            )

    def fail_after_accept(self, n: int = 1, error: BaseException | None = None) -> None:
        """The next `n` submits store their tasks, then fail instead of answering.

        The default error is a TransientError (a timeout after the vendor accepted); pass a
        BaseException to emulate the submitting process dying right there.
        """
        for _ in range(n):
            self._fail_after_accept.append(
                error or TransientError(f"{self.location}: timed out (injected, tasks accepted)")
            )

    def _call(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        for i, (names, error) in enumerate(self._fail_next):
            if name in names:
                del self._fail_next[i]
                raise error

    # -- the interface -----------------------------------------------------------------------
    def ensure_project(self) -> str:
        self._call("ensure_project")
        path = self.root / "project.json"
        with self._lock():
            if not path.exists():
                project = {"id": "1", "title": "Flywheel scenes", "created_at": _iso(self.now())}
                _write_atomic(path, json.dumps(project))
            return json.loads(path.read_text())["id"]

    def submit(self, tasks: Sequence[TaskSpec]) -> list[str]:
        self._call("submit")
        if not tasks:
            raise VendorError(f"{self.location}: nothing to import (empty task list)")
        if len(tasks) > self.chunk_size:
            raise VendorError(
                f"{self.location}: {len(tasks)} tasks in one import, the limit is "
                f"{self.chunk_size}; submit in chunks"
            )
        self.ensure_project()
        with self._lock():
            created = self.now()
            first = self._count() + 1
            rows = []
            for i, task in enumerate(tasks):
                data = {**task.data, "scene_id": task.scene_id, "batch_id": task.batch_id}
                rows.append({"id": str(first + i), "data": data, "created_at": _iso(created)})
            folder = self.root / "tasks"
            folder.mkdir(parents=True, exist_ok=True)
            body = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
            _write_atomic(folder / f"{first:012d}.jsonl", body)
            _write_atomic(self.root / "count.json", json.dumps({"count": first + len(rows) - 1}))
        if self._fail_after_accept:
            raise self._fail_after_accept.pop(0)
        return [r["id"] for r in rows]

    def find(self, keys: Sequence[str]) -> dict[str, str]:
        self._call("find")
        wanted = set(keys)
        found: dict[str, str] = {}
        for row in self._tasks():
            task_key = f"{row['data'].get('batch_id')}/{row['data'].get('scene_id')}"
            if task_key in wanted:
                found.setdefault(task_key, row["id"])  # the oldest, were there duplicates
        return found

    def changes(self, since: str | None) -> tuple[list[TaskUpdate], str | None]:
        self._call("changes")
        now = self.now()
        after = dt.datetime.fromisoformat(since) if since else None
        updates = []
        for row in self._tasks():
            created = dt.datetime.fromisoformat(row["created_at"])
            if created > now:
                continue
            done = created + self.turnaround(row)
            complete = done <= now
            changed = done if complete else created
            # a change at the cursor's own instant is reported again (a task created right
            # after the last sync, on the same tick): twice is harmless, never is not
            if after is not None and changed < after:
                continue
            updates.append(
                TaskUpdate(
                    external_id=row["id"],
                    key=f"{row['data']['batch_id']}/{row['data']['scene_id']}",
                    status=LABELED if complete else SUBMITTED,
                    created_at=created,
                    completed_at=done if complete else None,
                    annotator=self._pick(row, ANNOTATORS) if complete else None,
                    result=self._label(row, done, self._pick(row, ANNOTATORS))
                    if complete
                    else None,
                )
            )
        return updates, _iso(now)

    # -- the simulation ----------------------------------------------------------------------
    def turnaround(self, row: dict) -> dt.timedelta:
        """The task's turnaround: lognormal, drawn once from the seed and the task's key."""
        u1, u2 = self._uniforms(row, "turnaround")
        normal = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
        seconds = self.turnaround_median.total_seconds() * math.exp(self.turnaround_sigma * normal)
        # nobody labels a scene in no time: at least a tenth of the median (and at most a minute)
        floor = min(60.0, 0.1 * self.turnaround_median.total_seconds())
        return dt.timedelta(seconds=max(floor, seconds))

    def _label(self, row: dict, done: dt.datetime, annotator: str) -> list[dict]:
        """The scene's tags as the scenario choices (or `other`), then the faults: a share
        `error_rate` of plainly wrong labels, and each fault that applies to this task (its
        annotator, completed at or after `after`), all drawn from the seed and the task."""
        tags = [t for t in row["data"].get("tags") or [] if t in SCENARIOS]
        choices = tags or ["other"]
        if self._uniforms(row, "error")[0] < self.error_rate:
            choices = [self._class(row, "wrong")]
        for fault in self.faults:
            if fault["annotator"] not in (None, annotator):
                continue
            if fault["after"] is not None and done < fault["after"]:
                continue
            if fault["kind"] == "random":
                choices = [self._class(row, "random")]
            else:
                a, b = fault["classes"]
                if (a in choices) != (b in choices):  # a label holding both stays as it is
                    choices = [b if c == a else a if c == b else c for c in choices]
        return [
            {
                "from_name": "scenario",
                "to_name": "scene",
                "type": "choices",
                "value": {"choices": choices},
            },
            {
                "from_name": "note",
                "to_name": "scene",
                "type": "textarea",
                "value": {"text": ["checked against the scene video"]},
            },
        ]

    def _class(self, row: dict, purpose: str) -> str:
        """One of the scenario classes, uniformly, from the seed and the task."""
        return CLASSES[int(self._uniforms(row, purpose)[0] * len(CLASSES)) % len(CLASSES)]

    def _pick(self, row: dict, options: Sequence[str]) -> str:
        return options[int(self._uniforms(row, "pick")[0] * len(options)) % len(options)]

    def _uniforms(self, row: dict, purpose: str) -> tuple[float, float]:
        text = f"{self.seed}:{purpose}:{row['data'].get('batch_id')}/{row['data'].get('scene_id')}"
        digest = hashlib.sha256(text.encode()).digest()
        a = (int.from_bytes(digest[:8], "big") + 0.5) / 2**64
        b = (int.from_bytes(digest[8:16], "big") + 0.5) / 2**64
        return a, b

    # -- storage -----------------------------------------------------------------------------
    def _tasks(self) -> Iterator[dict]:
        folder = self.root / "tasks"
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("*.jsonl")):
            for line in path.read_text().splitlines():
                if line:
                    yield json.loads(line)

    def _count(self) -> int:
        path = self.root / "count.json"
        return json.loads(path.read_text())["count"] if path.exists() else 0

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    with open(temp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
