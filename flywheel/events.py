"""The `events` log: every stage records each entity's transitions here (docs/contract.md §2).

Append-only: each call writes a new file. A caller that may repeat the same work after a
crash passes a deterministic `name`, so the rerun replaces its own earlier file instead of
adding a duplicate.

>>> from flywheel.lake import Lake
>>> import datetime as dt
>>> record(Lake(lake), ["log-1"], "ingested",
...        at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), name="doctest").name
'doctest.parquet'
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from flywheel import schemas
from flywheel.lake import Lake
from flywheel.redact import redactor

STAGES = (
    "collected",
    "ingested",
    "mined",
    "submitted",
    "labeled",
    "trained",
    "evaluated",
    "deployed",
)


def now() -> dt.datetime:
    """The current time, UTC."""
    return dt.datetime.now(dt.UTC)


def record(
    lake: Lake,
    entity_ids: Sequence[str],
    stage: str,
    at: dt.datetime | Sequence[dt.datetime] | None = None,
    attrs: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    name: str | None = None,
) -> str | Path:
    """Append one event per entity: `stage` reached at `at` (one time for all, or one each)."""
    n = len(entity_ids)
    times = [at or now()] * n if at is None or isinstance(at, dt.datetime) else list(at)
    scrub = redactor()  # attrs may carry a vendor's text: never a credential in the lake
    if attrs is None or isinstance(attrs, Mapping):
        encoded = [json.dumps(scrub(dict(attrs or {})), sort_keys=True)] * n
    else:
        encoded = [json.dumps(scrub(dict(a)), sort_keys=True) for a in attrs]
    table = pa.table(
        {
            "entity_id": pa.array(list(entity_ids), pa.string()),
            "stage": pa.array([stage] * n, pa.string()),
            "at": pa.array(times, schemas.UTC_TS),
            "attrs": pa.array(encoded, pa.string()),
        }
    )
    return lake.write("events", table, name=name)
