"""Sync: what changed at a vendor since the last sync -> `tasks`, `labels` and stage events.

``sync(lake, vendor)`` asks the vendor for tasks created or changed since the stored cursor,
merges them into the batch's ``tasks`` and ``labels`` files (one file per batch, rewritten
whole, so a rerun never duplicates a row), records a ``submitted`` event per scene at the
vendor's creation time and a ``labeled`` event at the vendor's completion time (again one file
per batch and stage, rewritten whole: each transition is in `events` exactly once), and only
then stores the new cursor. A crash anywhere re-pulls the same changes and rewrites the same
files.

>>> from labeling.schedule import submit
>>> submit(lake, "brakes", vendor).cost_submitted  # the 3 scenes not yet sent
0.24
>>> vendor.advance(dt.timedelta(days=3))  # the simulated vendor labels them meanwhile
>>> sync(lake, vendor)  # doctest: +ELLIPSIS
SyncSummary(vendor='simulated', changes=3, tasks=3, labeled=3, unknown=0, batches=['brakes-...'])
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from flywheel import events
from flywheel.config import LabelingConfig, load_config
from flywheel.display import html_table
from flywheel.lake import Lake, resolve
from labeling import _store
from labeling._retry import Retry
from labeling.normalize import normalise
from labeling.status import status
from labeling.vendors import open_vendor
from labeling.vendors.base import LABELED, SUBMITTED, TaskUpdate, Vendor


@dataclass
class SyncSummary:
    """What a sync pulled; ``as_dict()`` for JSON."""

    vendor: str
    changes: int = 0  # task states the vendor reported
    tasks: int = 0  # task rows written or updated
    labeled: int = 0  # tasks newly labeled by this sync
    unknown: int = 0  # tasks at the vendor that no batch of this lake holds (ignored)
    batches: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"synced {self.vendor}: {self.changes} changes, {self.tasks} tasks written, "
            f"{self.labeled} newly labeled, {self.unknown} unknown\n"
            f"batches: {', '.join(self.batches) or 'none'}"
        )

    def _repr_html_(self) -> str:
        rows = [(k, v) for k, v in self.as_dict().items() if k != "batches"]
        return html_table("label sync", [*rows, ("batches", ", ".join(self.batches))])


def sync(
    lake: str | Lake | None, vendor: Vendor, *, full: bool = False, retry: Retry | None = None
) -> SyncSummary:
    """Pull changes from `vendor` since the last sync (`full`: from the beginning).

    >>> sync(lake, vendor).labeled  # nothing new since the last sync
    0
    """
    lake = resolve(lake)
    retry = retry or Retry()
    summary = SyncSummary(vendor=vendor.name)
    with lake.lock(f"labeling-{vendor.name}"):
        cursor = None if full else _store.read_cursor(lake, vendor.name)
        # A full read reports every task, so every batch's files get read: read them while the
        # vendor builds its answer (seconds of server time; the lake reads use the other core).
        with cf.ThreadPoolExecutor(1) as pool:
            ahead = pool.submit(_read_all, lake) if full else None
            updates, new_cursor = retry.call(
                lambda: vendor.changes(cursor),
                "listing changed tasks",
                vendor.location,
                "nothing was written; rerun `flywheel label sync`",
            )
            known = ahead.result() if ahead is not None else {}
        summary.changes = len(updates)
        grouped: dict[str, list[TaskUpdate]] = defaultdict(list)
        for update in updates:
            grouped[update.batch_id].append(update)
        for batch_id, batch_updates in sorted(grouped.items()):
            outbox, tasks, labels = known.get(batch_id) or _read(lake, batch_id)
            if not outbox or outbox[0]["vendor"] != vendor.name:
                summary.unknown += len(batch_updates)
                continue
            written, labeled = _merge(lake, vendor.name, outbox, tasks, labels, batch_updates)
            summary.tasks += written
            summary.labeled += labeled
            summary.unknown += len(batch_updates) - written
            if written:
                summary.batches.append(batch_id)
        _store.write_cursor(lake, vendor.name, new_cursor)  # last: a crash re-pulls
    return summary


def sync_all(
    lake: str | Lake | None,
    vendor: str | None = None,
    *,
    full: bool = False,
    settings: LabelingConfig | None = None,
) -> list[SyncSummary]:
    """`sync` every vendor that has batches in the lake (or only the one named `vendor`),
    each opened with `settings` (by default `[labeling]` of the configuration); in name order.

    >>> [s.vendor for s in sync_all(lake)]
    ['simulated']
    """
    lake = resolve(lake)
    settings = settings or load_config().labeling
    known = status(lake)
    names = [vendor] if vendor else sorted(set(known["vendor"])) if len(known) else []
    return [sync(lake, open_vendor(name, lake, settings), full=full) for name in names]


Files = tuple[list[dict], list[dict], list[dict]]  # a batch's outbox, tasks and labels rows


def _read(lake: Lake, batch_id: str) -> Files:
    return (
        _store.read_batch(lake, batch_id),
        _store.read_rows(lake, "tasks", batch_id),
        _store.read_rows(lake, "labels", batch_id),
    )


def _read_all(lake: Lake) -> dict[str, Files]:
    return {batch_id: _read(lake, batch_id) for batch_id in _store.batch_ids(lake)}


def _merge(
    lake: Lake,
    vendor: str,
    outbox: list[dict],
    task_rows: list[dict],
    label_rows: list[dict],
    updates: list[TaskUpdate],
) -> tuple[int, int]:
    """Apply `updates` to one batch's tasks and labels (rows as read from its files) and write
    what changed; (tasks touched, newly labeled)."""
    batch_id = outbox[0]["batch_id"]
    expected = {r["scene_id"]: r for r in outbox}
    tasks = {r["scene_id"]: r for r in task_rows}
    labels = {r["scene_id"]: r for r in label_rows}
    synced = dt.datetime.now(dt.UTC)
    written = newly = changed = 0
    for update in sorted(updates, key=lambda u: (u.scene_id, u.completed_at or u.created_at)):
        plan = expected.get(update.scene_id)
        if plan is None:
            continue
        if plan["external_id"] and plan["external_id"] != update.external_id:
            continue  # not the task this batch adopted (a duplicate made outside Flywheel)
        row = tasks.get(update.scene_id) or {
            "batch_id": batch_id,
            "scene_id": update.scene_id,
            "vendor": vendor,
            "task_key": plan["task_key"],
            "selection": plan["selection"],
            "completed_at": None,
        }
        was_labeled = row.get("status") == LABELED
        before = ({k: v for k, v in row.items() if k != "synced_at"}, labels.get(update.scene_id))
        row.update(
            external_id=update.external_id,
            submitted_at=update.created_at,  # the vendor's own creation time
            synced_at=synced,
        )
        if update.status == LABELED:
            row["status"] = LABELED
            # the stage was reached at the first completion; a later re-annotation keeps it
            row["completed_at"] = row.get("completed_at") or update.completed_at
            labels[update.scene_id] = {
                "batch_id": batch_id,
                "scene_id": update.scene_id,
                "vendor": vendor,
                "annotator": update.annotator,
                "result": json.dumps(update.result, sort_keys=True),
                "completed_at": update.completed_at,
                "external_id": update.external_id,
                "task_key": plan["task_key"],
            }
            classes, objects = normalise(vendor, update.result)
            labels[update.scene_id] |= {"classes": classes, "objects": objects}
            newly += not was_labeled
        else:
            row["status"] = row.get("status") if was_labeled else SUBMITTED
        tasks[update.scene_id] = row
        written += 1
        after = ({k: v for k, v in row.items() if k != "synced_at"}, labels.get(update.scene_id))
        changed += after != before
    if not changed:  # a re-read of what the lake already holds: rewrite nothing
        return written, 0
    rows = [tasks[s] for s in sorted(tasks, key=lambda s: expected.get(s, {}).get("position", 0))]
    # events, then labels, then tasks: the files compared above are written last, so a crash
    # part-way leaves a difference and the rerun writes everything again (never skips events)
    seen = [r for r in rows if r.get("synced_at") is not None]
    _record(lake, "submitted", batch_id, vendor, seen, "submitted_at")
    done = [r for r in seen if r["completed_at"]]
    _record(lake, "labeled", batch_id, vendor, done, "completed_at")
    if labels:
        _store.write_rows(lake, "labels", batch_id, list(labels.values()), _store.LABEL_SCHEMA)
    _store.write_rows(lake, "tasks", batch_id, rows, _store.TASK_SCHEMA)
    return written, newly


def _record(lake: Lake, stage: str, batch_id: str, vendor: str, rows: list[dict], column: str):
    if not rows:
        return
    events.record(
        lake,
        [r["scene_id"] for r in rows],
        stage,
        at=[r[column] for r in rows],
        attrs=[
            {"batch_id": batch_id, "vendor": vendor, "external_id": r["external_id"]} for r in rows
        ],
        name=f"labeling-{stage}-{batch_id}",
    )
