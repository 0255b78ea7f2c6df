"""Labeling's state in the lake: the outbox (`batches`), `tasks`, `labels`, sync cursors.

- ``batches/<batch_id>.parquet``: the outbox, one row per scene of a batch. Written before any
  vendor call and rewritten (atomically, same name) at each step, so its `state` moves
  planned | pending_approval -> submitting -> submitted and a crash leaves it resumable; a
  pending_approval batch that a person declines (`labeling.decline`) ends as `rejected`.
- ``tasks/<batch_id>.parquet`` and ``labels/<batch_id>.parquet``: one file per batch,
  rewritten with the merged state, so re-running a submit or a sync never adds rows.
- ``events/labeling-submitted-<batch_id>.parquet``, ``…-labeled-…``: likewise.
- ``_labeling/cursors/<vendor>.json``: where the last sync stopped, written last:
  ``{"cursor": <the vendor's cursor>, "synced_at": ISO}``. The cursor is whatever JSON value
  the vendor returned: a plain ISO string (the simulated vendor, and Label Studio cursors written
  by earlier versions) or an object (Label Studio now: ``{"at": ISO, "seen": {id: ISO}}``).
  Readers hand it back unchanged, so old files keep working.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pyarrow as pa

from flywheel import schemas
from flywheel.lake import Lake
from flywheel.redact import redactor
from labeling.vendors.base import Cursor

# batch states
PLANNED = "planned"
PENDING_APPROVAL = "pending_approval"
SUBMITTING = "submitting"
SUBMITTED = "submitted"
REJECTED = "rejected"  # declined while pending_approval: nothing sent, its scenes free again
OPEN_STATES = (PLANNED, PENDING_APPROVAL, SUBMITTING)

# the full schemas of labeling's tables, declared in the core with every other table
BATCH_SCHEMA = schemas.SCHEMAS["batches"]
TASK_SCHEMA = schemas.SCHEMAS["tasks"]
LABEL_SCHEMA = schemas.SCHEMAS["labels"]


def read_rows(lake: Lake, table: str, name: str) -> list[dict[str, Any]]:
    """The rows of one file of a table (empty when it does not exist)."""
    data = lake.read_file(table, name)
    return [] if data is None else data.to_pylist()


def write_rows(lake: Lake, table: str, name: str, rows: list[dict], schema: pa.Schema) -> None:
    """Write one file of a table. Text columns pass through `flywheel.redact`: they hold what
    a vendor sent (annotators, results, ids), and a credential it echoed is never stored."""
    scrub = redactor()
    text = {f.name for f in schema if pa.types.is_string(f.type)}
    data = pa.Table.from_pylist(
        [{f.name: scrub(r.get(f.name)) if f.name in text else r.get(f.name) for f in schema}
         for r in rows],
        schema,
    )  # fmt: skip
    lake.write(table, data, name=name)


def read_batch(lake: Lake, batch_id: str) -> list[dict[str, Any]]:
    return sorted(read_rows(lake, "batches", batch_id), key=lambda r: r["position"])


def write_batch(lake: Lake, rows: list[dict[str, Any]], state: str | None = None) -> None:
    now = dt.datetime.now(dt.UTC)
    for row in rows:
        if state is not None:
            row["state"] = state
        row["updated_at"] = now
    write_rows(lake, "batches", rows[0]["batch_id"], rows, BATCH_SCHEMA)


def batch_ids(lake: Lake) -> list[str]:
    return [p.stem for p in lake.files("batches")]


def all_batches(lake: Lake) -> list[list[dict[str, Any]]]:
    return [b for b in (read_batch(lake, i) for i in batch_ids(lake)) if b]


def cursor_file(vendor: str) -> str:
    return f"_labeling/cursors/{vendor}.json"


def read_cursor(lake: Lake, vendor: str) -> Cursor | None:
    """The cursor the last sync of `vendor` stored (None: never synced), as the vendor wrote it."""
    text = lake.read_text(cursor_file(vendor))
    return json.loads(text)["cursor"] if text is not None else None


def write_cursor(lake: Lake, vendor: str, cursor: Cursor | None) -> None:
    body = {"cursor": cursor, "synced_at": dt.datetime.now(dt.UTC).isoformat()}
    lake.write_text(cursor_file(vendor), json.dumps(body))
