"""Small lakes with hand-chosen stage times, written through the lake and the events log."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from flywheel import events, schemas
from flywheel.lake import Lake
from labeling._store import BATCH_SCHEMA, TASK_SCHEMA

T0 = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)  # a Monday
H = 3600.0


def at(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def add_log(lake: Lake, log_id: str, scenes: dict[str, float], ingested_h: float) -> None:
    """Scenes `{scene_id: end hour}` of one log, its `logs` row and its `ingested` event."""
    n = len(scenes)
    end_ns = [int(at(h).timestamp() * 1e9) for h in scenes.values()]
    lake.write(
        "scenes",
        pa.table(
            {
                "scene_id": list(scenes),
                "log_id": [log_id] * n,
                "start_ns": [e - 10**10 for e in end_ns],
                "end_ns": end_ns,
                "max_speed": [10.0] * n,
                "min_accel": [-1.0] * n,
                "min_object_distance": [20.0] * n,
                "n_tracks": [1] * n,
                "n_pedestrians": [0] * n,
                "n_vehicles": [1] * n,
                "tags": pa.array([[]] * n, pa.list_(pa.string())),
                "embedding": pa.array([[0.0, 1.0]] * n, pa.list_(pa.float32())),
                "embedding_version": ["test"] * n,
            }
        ),
        name=log_id,
    )
    events.record(lake, [log_id], "ingested", at=at(ingested_h), name=f"ingested-{log_id}")
    lake.write(
        "logs",
        pa.table(
            {
                "log_id": [log_id],
                "source_uri": [f"test://{log_id}"],
                "bytes": [0],
                "message_count": [0],
                "start_ns": [min(end_ns) - 10**10],
                "end_ns": [max(end_ns)],
                "ingested_at": pa.array([at(ingested_h)], schemas.UTC_TS),
            }
        ),
        name=log_id,
    )


def stage(lake: Lake, stage_name: str, times: dict[str, float], **attrs) -> None:
    """One `stage_name` event per entity, at the given hours."""
    events.record(
        lake, list(times), stage_name, at=[at(h) for h in times.values()], attrs=attrs or None
    )


def batch(
    lake: Lake,
    batch_id: str,
    vendor: str,
    sla_h: float,
    tasks: dict[str, tuple[float, float | None]],
) -> None:
    """A submitted batch: `{scene_id: (submitted hour, completed hour or None)}`, as labeling
    stores it (outbox row, task row, `submitted`/`labeled` events)."""
    ids = list(tasks)
    n = len(ids)
    sub = [at(s) for s, _ in tasks.values()]
    done = [None if c is None else at(c) for _, c in tasks.values()]
    columns = {
        "batch_id": [batch_id] * n,
        "scene_id": ids,
        "vendor": [vendor] * n,
        "external_id": [f"{batch_id}-{i}" for i in range(n)],
        "status": ["labeled" if d else "submitted" for d in done],
        "submitted_at": pa.array(sub, schemas.UTC_TS),
        "completed_at": pa.array(done, schemas.UTC_TS),
    }
    lake.write("tasks", schemas.filled(columns, TASK_SCHEMA, n), name=batch_id)
    outbox = {
        "batch_id": [batch_id] * n,
        "vendor": [vendor] * n,
        "state": ["submitted"] * n,
        "scene_id": ids,
        "sla_s": [sla_h * H] * n,
        "position": list(range(n)),
    }
    lake.write("batches", schemas.filled(outbox, BATCH_SCHEMA, n), name=batch_id)
    attrs = {"batch_id": batch_id, "vendor": vendor}
    events.record(lake, ids, "submitted", at=sub, attrs=attrs)
    labeled = [i for i, d in zip(ids, done, strict=True) if d]
    if labeled:
        events.record(lake, labeled, "labeled", at=[d for d in done if d], attrs=attrs)


def hours(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=float) * H
