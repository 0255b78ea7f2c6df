"""Scheduling: a saved selection -> priced batches -> tasks at a vendor, each scene exactly once.

``submit`` orders the selection's scenes by mining score (best first), skips scenes that
vendor already has (unless ``relabel``), splits them into batches, prices each, refuses the
whole submission when it would exceed ``max_cost``, parks batches above
``approval_threshold`` as ``pending_approval`` until `approve` (or `decline`, which sets such
a batch ``rejected``: nothing is sent and its scenes count as never planned), and submits the
rest.

Exactly once (the outbox). A batch is written to ``batches/<batch_id>.parquet`` before the
vendor is called, and its state moves planned -> submitting -> submitted, each step an atomic
rewrite of that file. Every task carries a key (batch id + scene id) that the vendor stores.
A run that dies after the vendor accepted tasks but before the local commit leaves the batch
in ``submitting``; every later run first looks its keys up at the vendor (`Vendor.find`) and
submits only the tasks the vendor does not have. A transient failure in the middle of a
submit is reconciled the same way before the retry, since the vendor may have accepted
the tasks before the connection dropped.

>>> from labeling.vendors.simulated import SimulatedVendor
>>> vendor = SimulatedVendor.for_lake(lake)
>>> summary = submit(lake, "brakes", vendor, batch_size=2)
>>> summary.scenes, summary.skipped, [b.tasks for b in summary.batches]
(6, 3, [2, 1])
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from flywheel.config import LabelingConfig, load_config
from flywheel.display import html_table
from flywheel.errors import InputError, TransientError
from flywheel.lake import Lake, resolve
from flywheel.names import check_name
from labeling import _store
from labeling._retry import Retry, exhausted
from labeling._store import PENDING_APPROVAL, PLANNED, REJECTED, SUBMITTED, SUBMITTING
from labeling.status import status
from labeling.vendors import open_vendor
from labeling.vendors.base import TaskSpec, Vendor, key


@dataclass
class BatchResult:
    """What happened to one batch in a run."""

    batch_id: str
    state: str
    tasks: int
    cost: float
    submitted: int = 0  # tasks created at the vendor by this run
    reconciled: int = 0  # tasks found already at the vendor (after a crash) and adopted


@dataclass
class SubmitSummary:
    """The outcome of `submit`, `approve` or `resume`; ``as_dict()`` for JSON."""

    vendor: str
    selection: str | None = None
    scenes: int = 0  # in the selection
    skipped_submitted: int = 0  # already submitted to or labeled by this vendor
    skipped_open: int = 0  # already in a batch not yet submitted (e.g. pending approval)
    batches: list[BatchResult] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return self.skipped_submitted + self.skipped_open

    @property
    def cost_submitted(self) -> float:
        return round(sum(b.cost for b in self.batches if b.state == SUBMITTED), 6)

    @property
    def pending_approval(self) -> list[str]:
        return [b.batch_id for b in self.batches if b.state == PENDING_APPROVAL]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            skipped=self.skipped,
            cost_submitted=self.cost_submitted,
            pending_approval=self.pending_approval,
        )
        return out

    def __str__(self) -> str:
        submitted = sum(b.state == SUBMITTED for b in self.batches)
        lines = [
            f"{self.vendor}, selection {self.selection}: {self.scenes} scenes, "
            f"{self.skipped} skipped (already sent or waiting)",
            f"{len(self.batches)} batches: {submitted} submitted (cost {self.cost_submitted:g}), "
            f"{len(self.pending_approval)} pending approval",
        ]
        return "\n".join(
            lines + [f"  {b.batch_id}: {b.state}, {b.tasks} tasks" for b in self.batches]
        )

    def _repr_html_(self) -> str:
        rows: list[tuple[str, object]] = [
            ("vendor", self.vendor),
            ("selection", self.selection),
            ("scenes", self.scenes),
            ("skipped", self.skipped),
            ("cost submitted", self.cost_submitted),
        ]
        rows += [(b.batch_id, f"{b.state}, {b.tasks} tasks, cost {b.cost:g}") for b in self.batches]
        return html_table("label submit", rows)


def submit(
    lake: str | Lake | None,
    selection: str,
    vendor: Vendor,
    *,
    batch_size: int = 100,
    priority: int = 0,
    max_cost: float | None = None,
    approval_threshold: float | None = None,
    relabel: bool = False,
    retry: Retry | None = None,
) -> SubmitSummary:
    """Submit saved selection `selection` to `vendor` in batches; see the module docstring.

    Raises InputError (nothing planned, nothing submitted) when the new batches would cost
    more than `max_cost`, and VendorError naming the vendor when retries run out (the batch
    stays ``submitting``; rerun `submit` or `resume` to finish it).

    >>> submit(lake, "brakes", vendor, max_cost=10).cost_submitted  # vendor: the simulated one
    0.24
    """
    import mining

    lake = resolve(lake)
    retry = retry or Retry()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch size must be a positive integer, got {batch_size!r}")
    frame = mining.open(lake).selection(selection)
    summary = SubmitSummary(vendor=vendor.name, selection=selection, scenes=len(frame))
    with lake.lock(f"labeling-{vendor.name}"):
        # first, finish what an earlier run left half-done, before submitting anything new
        for rows in _open_batches(lake, vendor.name, (SUBMITTING,)):
            summary.batches.append(_push(lake, vendor, rows, retry))

        done, open_ = _known_scenes(lake, vendor.name)
        ordered = _order(frame)
        todo = []
        for row in ordered:
            if row["scene_id"] in open_:
                summary.skipped_open += 1
            elif row["scene_id"] in done and not relabel:
                summary.skipped_submitted += 1
            else:
                todo.append(row)
        planned = _plan(lake, vendor, selection, todo, batch_size, priority, approval_threshold)
        total = round(sum(rows[0]["cost"] for rows in planned), 6)
        if max_cost is not None and total > max_cost + 1e-9:
            n = sum(len(rows) for rows in planned)
            raise InputError(
                f"submitting {n} scenes of selection {selection!r} to {vendor.name} would cost "
                f"${total:,.2f} ({n} tasks x ${vendor.price_per_task:,.2f}), more than the "
                f"maximum ${max_cost:,.2f}; nothing was submitted. Raise --max-cost or submit "
                "a smaller selection",
                cost=total,
                max_cost=max_cost,
            )
        for rows in planned:  # the outbox: every batch recorded before any vendor call
            _store.write_batch(lake, rows)
        for rows in _open_batches(lake, vendor.name, (PLANNED,)):
            summary.batches.append(_push(lake, vendor, rows, retry))
        for rows in planned:
            if rows[0]["state"] == PENDING_APPROVAL:
                summary.batches.append(_result(rows))
    return summary


def approve(
    lake: str | Lake | None,
    batch_id: str,
    vendor: Vendor | None = None,
    *,
    retry: Retry | None = None,
    settings: LabelingConfig | None = None,
) -> SubmitSummary:
    """Approve a batch waiting as pending_approval, and submit it to `vendor` (by default the
    vendor it was planned for, see `vendor_of`).

    >>> (waiting,) = submit(lake, "brakes", vendor, approval_threshold=0.1).pending_approval
    >>> [b.state for b in approve(lake, waiting, vendor).batches]
    ['submitted']
    """
    if vendor is None:
        vendor = vendor_of(lake, batch_id, settings)
    check_name(batch_id, "batch")  # batch ids are names Flywheel gives (its file name too)
    lake = resolve(lake)
    retry = retry or Retry()
    with lake.lock(f"labeling-{vendor.name}"):
        rows = _store.read_batch(lake, batch_id)
        if not rows:
            waiting = [
                b[0]["batch_id"]
                for b in _store.all_batches(lake)
                if b[0]["state"] == PENDING_APPROVAL
            ]
            raise InputError(
                f"no batch {batch_id!r} in {lake.root}; waiting for approval: "
                f"{', '.join(waiting) or 'none'}",
                batch_id=batch_id,
            )
        if rows[0]["vendor"] != vendor.name:
            raise InputError(
                f"batch {batch_id} is for vendor {rows[0]['vendor']!r}, not {vendor.name!r}",
                batch_id=batch_id,
            )
        if rows[0]["state"] == REJECTED:
            raise InputError(
                f"batch {batch_id} was rejected, so nothing of it is sent; submit its selection "
                f"{rows[0]['selection']!r} again to plan its scenes anew",
                batch_id=batch_id,
            )
        summary = SubmitSummary(vendor=vendor.name, selection=rows[0]["selection"])
        if rows[0]["state"] == PENDING_APPROVAL:
            now = dt.datetime.now(dt.UTC)
            for row in rows:
                row["approved_at"] = now
            _store.write_batch(lake, rows, PLANNED)
        if rows[0]["state"] in (PLANNED, SUBMITTING):
            summary.batches.append(_push(lake, vendor, rows, retry))
        else:
            summary.batches.append(_result(rows))
    return summary


@dataclass
class Declined:
    """The outcome of `decline`: the batch as it now is, and whether this call rejected it."""

    batch_id: str
    vendor: str
    selection: str | None
    state: str
    tasks: int
    cost: float
    changed: bool

    def as_dict(self) -> dict[str, Any]:
        """The batch, without `changed`: the same for a first and a repeated decline."""
        out = asdict(self)
        out.pop("changed")
        return out


def decline(
    lake: str | Lake | None, batch_id: str, by: str | None = None, *, via: str = "python"
) -> Declined:
    """Reject batch `batch_id` waiting as pending_approval: its state becomes ``rejected``,
    nothing is sent, and a later `submit` plans its scenes again (in a new batch). Records one
    ``rejected`` event for the batch, attrs ``{"by": by, "via": via}``. Idempotent: declining a
    rejected batch changes and records nothing. A batch past approval (planned, submitting,
    submitted) cannot be declined: InputError.

    >>> (waiting,) = submit(lake, "brakes", vendor, approval_threshold=0.1).pending_approval
    >>> decline(lake, waiting, "ana").state, decline(lake, waiting, "ana").changed
    ('rejected', False)
    """
    from flywheel import events, sources

    check_name(batch_id, "batch")
    lake = resolve(lake)
    rows = _store.read_batch(lake, batch_id)
    if not rows:
        raise InputError(f"no batch {batch_id!r} in {lake.root}", batch_id=batch_id)
    with lake.lock(f"labeling-{rows[0]['vendor']}"):  # the lock `submit` and `approve` take
        rows = _store.read_batch(lake, batch_id)
        state = rows[0]["state"]
        if state not in (PENDING_APPROVAL, REJECTED):
            raise InputError(
                f"batch {batch_id} is {state}, not waiting for approval: only a pending_approval "
                "batch can be rejected (`flywheel label reject` rejects returned labels)",
                batch_id=batch_id,
                state=state,
            )
        changed = state == PENDING_APPROVAL
        if changed:  # the event first, under a fixed name: a crash before the state is rewritten
            # leaves the batch pending, and the retry replaces this same event file
            events.record(
                lake,
                [batch_id],
                "rejected",
                attrs={"by": by or sources.user(), "via": via},
                name=f"labeling-rejected-{batch_id}",
            )
            _store.write_batch(lake, rows, REJECTED)
    first = rows[0]
    return Declined(
        batch_id, first["vendor"], first["selection"], first["state"], len(rows), first["cost"],
        changed,
    )  # fmt: skip


def vendor_of(
    lake: str | Lake | None, batch_id: str, settings: LabelingConfig | None = None
) -> Vendor:
    """The vendor batch `batch_id` is for, opened with `settings` (by default `[labeling]` of
    the configuration, see flywheel.config)."""
    lake = resolve(lake)
    known = status(lake, batch_id)
    name = known["vendor"].iloc[0] if len(known) else "simulated"
    return open_vendor(name, lake, settings or load_config().labeling)


def resume(lake: str | Lake | None, vendor: Vendor, *, retry: Retry | None = None) -> SubmitSummary:
    """Finish every batch an earlier run left planned or submitting (reconciling first)."""
    lake = resolve(lake)
    retry = retry or Retry()
    summary = SubmitSummary(vendor=vendor.name)
    with lake.lock(f"labeling-{vendor.name}"):
        for state in (SUBMITTING, PLANNED):
            for rows in _open_batches(lake, vendor.name, (state,)):
                summary.batches.append(_push(lake, vendor, rows, retry))
    return summary


def batches(lake: str | Lake | None = None) -> pd.DataFrame:
    """The outbox: one row per scene of every batch (``state``, ``external_id``, …)."""
    lake = resolve(lake)
    rows = [r for b in _store.all_batches(lake) for r in b]
    columns = [f.name for f in _store.BATCH_SCHEMA]
    return pd.DataFrame(rows, columns=columns)


# -- planning ---------------------------------------------------------------------------------
def _order(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Best first: highest mining score, then the selection's rank."""
    rows = frame.to_dict("records")
    for row in rows:
        score = row.get("score")
        row["score"] = None if score is None or not math.isfinite(float(score)) else float(score)
    return sorted(rows, key=lambda r: (r["score"] is None, -(r["score"] or 0.0), r.get("rank", 0)))


def _known_scenes(lake: Lake, vendor: str) -> tuple[set[str], set[str]]:
    """Scenes this vendor has (submitted or labeled), and scenes in its unsubmitted batches."""
    done: set[str] = set()
    open_: set[str] = set()
    for rows in _store.all_batches(lake):
        if rows[0]["vendor"] != vendor or rows[0]["state"] == REJECTED:
            continue  # a rejected batch sent nothing: its scenes are free to plan again
        target = done if rows[0]["state"] == SUBMITTED else open_
        target.update(r["scene_id"] for r in rows)
    con = lake.connect()
    for table in ("tasks", "labels"):
        found = con.execute(f"SELECT DISTINCT scene_id FROM {table} WHERE vendor = ?", [vendor])
        done.update(r[0] for r in found.fetchall())
    return done, open_


def _plan(
    lake: Lake,
    vendor: Vendor,
    selection: str,
    scenes: list[dict[str, Any]],
    batch_size: int,
    priority: int,
    approval_threshold: float | None,
) -> list[list[dict[str, Any]]]:
    now = dt.datetime.now(dt.UTC)
    planned = []
    taken: set[str] = set()
    for start in range(0, len(scenes), batch_size):
        chunk = scenes[start : start + batch_size]
        batch_id = _batch_id(lake, vendor.name, selection, [s["scene_id"] for s in chunk], taken)
        taken.add(batch_id)
        cost = round(len(chunk) * vendor.price_per_task, 6)
        waits = approval_threshold is not None and cost > approval_threshold + 1e-9
        rows = []
        for position, scene in enumerate(chunk):
            rows.append(
                {
                    "batch_id": batch_id,
                    "vendor": vendor.name,
                    "selection": selection,
                    "state": PENDING_APPROVAL if waits else PLANNED,
                    "priority": int(priority),
                    "position": position,
                    "scene_id": scene["scene_id"],
                    "score": scene["score"],
                    "rank": _int(scene.get("rank")),
                    "task_key": key(batch_id, scene["scene_id"]),
                    "data": json.dumps(_task_data(scene, batch_id, selection, priority)),
                    "price_per_task": vendor.price_per_task,
                    "cost": cost,
                    "sla_s": vendor.sla.total_seconds(),
                    "created_at": now,
                }
            )
        planned.append(rows)
    return planned


def _batch_id(lake: Lake, vendor: str, selection: str, scenes: list[str], taken: set[str]) -> str:
    """Stable: the same scenes for the same vendor give the same id; a relabel gets -r2, -r3."""
    digest = hashlib.sha256("\n".join([vendor, *scenes]).encode()).hexdigest()[:8]
    base = candidate = f"{selection}-{digest}"
    n = 1
    while candidate in taken or lake.exists("batches", candidate):
        n += 1
        candidate = f"{base}-r{n}"
    return candidate


def _task_data(scene: dict[str, Any], batch_id: str, selection: str, priority: int) -> dict:
    """What the annotator sees, and the key (scene_id + batch_id) the vendor stores."""
    start_ns, end_ns = _int(scene.get("start_ns")), _int(scene.get("end_ns"))
    tags = [str(t) for t in (scene.get("tags") if scene.get("tags") is not None else [])]
    data: dict[str, Any] = {
        "scene_id": scene["scene_id"],
        "batch_id": batch_id,
        "selection": selection,
        "priority": int(priority),
        "log_id": scene.get("log_id"),
        "start_ns": start_ns,
        "end_ns": end_ns,
        "tags": tags,
    }
    if start_ns is not None and end_ns is not None:
        start = dt.datetime.fromtimestamp(start_ns / 1e9, dt.UTC)
        data["start"] = start.isoformat()
        data["end"] = dt.datetime.fromtimestamp(end_ns / 1e9, dt.UTC).isoformat()
        data["description"] = _describe(scene, tags, start, (end_ns - start_ns) / 1e9)
    return data


def _describe(scene: dict[str, Any], tags: list[str], start: dt.datetime, seconds: float) -> str:
    parts = [f"{seconds:.0f} s of log {scene.get('log_id')} from {start:%Y-%m-%d %H:%M:%S} UTC"]
    parts.append(", ".join(tags) if tags else "no tags")
    facts = []
    for column, unit in (("n_tracks", "tracks"), ("n_pedestrians", "pedestrians")):
        if scene.get(column) is not None:
            facts.append(f"{int(scene[column])} {unit}")
    if scene.get("max_speed") is not None:
        facts.append(f"max {float(scene['max_speed']):.1f} m/s")
    return "; ".join(parts + ([", ".join(facts)] if facts else []))


def _int(value: Any) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value)


# -- submitting -------------------------------------------------------------------------------
def _open_batches(lake: Lake, vendor: str, states: Sequence[str]) -> list[list[dict]]:
    """Batches of `vendor` in `states`, by priority (highest first), then best score."""
    found = [
        rows
        for rows in _store.all_batches(lake)
        if rows[0]["vendor"] == vendor and rows[0]["state"] in states
    ]

    def order(rows: list[dict]) -> tuple:
        scores = [r["score"] for r in rows if r["score"] is not None]
        best = max(scores) if scores else -math.inf
        return (-rows[0]["priority"], -best, rows[0]["created_at"])

    return sorted(found, key=order)


def _push(lake: Lake, vendor: Vendor, rows: list[dict], retry: Retry) -> BatchResult:
    """Submit one batch's missing tasks, reconciling with the vendor first when resuming."""
    batch_id = rows[0]["batch_id"]
    hint = (
        f"batch {batch_id} is saved as submitting; rerun `flywheel label submit` (or "
        "labeling.resume) to finish it without duplicates"
    )
    result = _result(rows)
    if rows[0]["state"] == SUBMITTING:
        missing = [r["task_key"] for r in rows if not r["external_id"]]
        if missing:
            found = _find(vendor, missing, retry, hint)
            result.reconciled += _adopt(rows, found)
    else:
        _store.write_batch(lake, rows, SUBMITTING)  # the intent, before the vendor hears of it
    missing_rows = [r for r in rows if not r["external_id"]]
    if missing_rows:
        retry.call(vendor.ensure_project, "creating the project", vendor.location, hint)
    for start in range(0, len(missing_rows), vendor.chunk_size):
        chunk = missing_rows[start : start + vendor.chunk_size]
        created, adopted = _submit_chunk(vendor, chunk, retry, hint)
        result.submitted += _adopt(rows, created)
        result.reconciled += _adopt(rows, adopted)
        _store.write_batch(lake, rows)  # checkpoint: external ids so far
    now = dt.datetime.now(dt.UTC)
    for row in rows:
        row["submitted_at"] = row["submitted_at"] or now
    _write_tasks(lake, rows)
    _store.write_batch(lake, rows, SUBMITTED)
    result.state = SUBMITTED
    return result


def _submit_chunk(
    vendor: Vendor, rows: list[dict], retry: Retry, hint: str
) -> tuple[dict[str, str], dict[str, str]]:
    """(tasks created, tasks found already there) for one chunk, retrying only transients.

    A transient failure is ambiguous (the vendor may have stored the tasks before the
    connection dropped), so before each retry the keys are looked up and only the tasks the
    vendor does not have are sent again.
    """
    specs = [TaskSpec(r["batch_id"], r["scene_id"], json.loads(r["data"])) for r in rows]
    created: dict[str, str] = {}
    adopted: dict[str, str] = {}
    for attempt in range(retry.attempts):
        try:
            ids = vendor.submit(specs)
        except TransientError as error:
            if attempt + 1 >= retry.attempts:
                raise exhausted(
                    f"submitting {len(specs)} tasks", vendor.location, retry.attempts, error, hint
                ) from error
            retry.sleep(retry.delay(attempt, error))
            found = _find(vendor, [s.key for s in specs], retry, hint)
            adopted.update(found)
            specs = [s for s in specs if s.key not in found]
            if not specs:
                break
            continue
        if len(ids) != len(specs):
            raise exhausted(
                "submitting tasks",
                vendor.location,
                attempt + 1,
                ValueError(f"{len(ids)} task ids returned for {len(specs)} tasks"),
                hint,
            )
        created.update({s.key: str(i) for s, i in zip(specs, ids, strict=True)})
        break
    return created, adopted


def _find(vendor: Vendor, keys: list[str], retry: Retry, hint: str) -> dict[str, str]:
    return retry.call(lambda: vendor.find(keys), "looking tasks up", vendor.location, hint)


def _adopt(rows: list[dict], ids: dict[str, str]) -> int:
    n = 0
    for row in rows:
        if not row["external_id"] and row["task_key"] in ids:
            row["external_id"] = ids[row["task_key"]]
            n += 1
    return n


def _write_tasks(lake: Lake, rows: list[dict]) -> None:
    """The batch's `tasks` rows (status submitted), keeping anything a sync already wrote."""
    batch_id = rows[0]["batch_id"]
    existing = {r["scene_id"]: r for r in _store.read_rows(lake, "tasks", batch_id)}
    out = []
    for row in rows:
        out.append(
            existing.get(row["scene_id"])
            or {
                "batch_id": batch_id,
                "scene_id": row["scene_id"],
                "vendor": row["vendor"],
                "external_id": row["external_id"],
                "status": SUBMITTED,
                "submitted_at": row["submitted_at"],
                "completed_at": None,
                "task_key": row["task_key"],
                "selection": row["selection"],
                "synced_at": None,
            }
        )
    _store.write_rows(lake, "tasks", batch_id, out, _store.TASK_SCHEMA)


def _result(rows: list[dict]) -> BatchResult:
    return BatchResult(rows[0]["batch_id"], rows[0]["state"], len(rows), rows[0]["cost"])
