"""`flywheel track`: the stages that happen outside the platform (training, evaluation, deployment).

Each is an event of a model id in `events`: ``trained`` names the label batches the run used
(``attrs.batches``), which is how the report joins scenes to models. Recording the same stage
of the same model again replaces the earlier record (a correction or a backfill), so it counts
once.

>>> track(lake, "trained", "detector-v7", batches=[batch]).name  # doctest: +ELLIPSIS
'track-trained-detector-v7-....parquet'
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flywheel import events
from flywheel.errors import InputError
from flywheel.lake import Lake, resolve
from flywheel.lineage import parse_ref
from flywheel.names import file_stem
from flywheel.sources import user

TRACKED = ("trained", "evaluated", "deployed")


def track(
    lake: str | Lake | None,
    stage: str,
    model: str,
    batches: Sequence[str] = (),
    at: dt.datetime | None = None,
    attrs: Mapping[str, Any] | None = None,
    datasets: Sequence[str] = (),
    by: str | None = None,
    code: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> Path:
    """Record that `model` reached `stage` at `at` (default now); the events file written.

    `trained` names what the run used: dataset versions (``NAME@N``) and/or label batches,
    and records who trained it (`by`, default the user), the code version and parameters. The
    scenes of the batches are fixed in `model_inputs` then, so lineage outlives a purge."""
    lake = resolve(lake)
    if stage not in TRACKED:
        raise InputError(f"cannot track {stage!r}: choose one of {', '.join(TRACKED)}")
    if not model or not model.strip():
        raise InputError("a model id is required (--model)")
    at = at or events.now()
    if at.tzinfo is None:
        raise InputError(f"--at {at.isoformat()} has no time zone; add one (e.g. +00:00 or Z)")
    attrs = dict(attrs or {})
    con = lake.connect()
    if stage == "trained":
        if not batches and not datasets:
            raise InputError(
                f"`trained` needs what model {model!r} was trained on: --dataset NAME@N or "
                "--batch BATCH_ID (repeatable)"
            )
        known = {
            r[0]
            for r in con.execute(
                "SELECT DISTINCT json_extract_string(attrs, '$.batch_id') FROM events "
                "WHERE stage = 'submitted'"
            ).fetchall()
        }
        unknown = sorted(set(batches) - known)
        if unknown:
            raise InputError(
                f"unknown label batch(es) {', '.join(unknown)}: no scene of this lake was "
                "submitted in them (`flywheel label status` lists batches)"
            )
        refs = [f"{n}@{v}" for n, v in (parse_ref(d) for d in datasets)]
        versions = {
            r[0]
            for r in con.execute(
                "SELECT DISTINCT dataset || '@' || version FROM datasets "
                "WHERE list_contains($refs, dataset || '@' || version)",
                {"refs": refs},
            ).fetchall()
        }
        missing = sorted(set(refs) - versions)
        if missing:
            raise InputError(
                f"unknown dataset version(s) {', '.join(missing)} "
                "(`flywheel dataset list` lists them)"
            )
        attrs["batches"] = sorted(set(batches))
        attrs["datasets"] = sorted(set(refs))
        attrs["by"] = by or user()
        if code is not None:
            attrs["code"] = code
        if params is not None:
            attrs["params"] = dict(params)
        _fix_inputs(lake, con, model, sorted(set(batches)), at)
    else:
        if batches or datasets:
            raise InputError(f"--batch and --dataset belong to `trained`, not `{stage}`")
        trained = con.execute(
            "SELECT min(\"at\") FROM events WHERE stage = 'trained' AND entity_id = ?", [model]
        ).fetchone()[0]
        if trained is None:
            raise InputError(
                f"model {model!r} has no training record; run `flywheel track trained "
                f"--model {model} --dataset NAME@N …` first"
            )
        if at < trained:
            raise InputError(
                f"model {model!r} cannot be {stage} at {at.isoformat()}, before it was trained "
                f"({trained.isoformat()})"
            )
    return events.record(lake, [model], stage, at=at, attrs=attrs, name=_file_name(stage, model))


def _fix_inputs(lake: Lake, con, model: str, batches: list[str], at: dt.datetime) -> None:
    """Write what the batches hold now (scene, log, source, vendor) as the model's inputs."""
    rows = con.sql(
        """
        SELECT $model AS model, t.batch_id, t.scene_id, s.log_id,
            coalesce(l.source, 'unassigned') AS source, t.vendor, $at AS recorded_at
        FROM tasks t LEFT JOIN scenes s USING (scene_id) LEFT JOIN logs l USING (log_id)
        WHERE list_contains($batches, t.batch_id) ORDER BY t.batch_id, t.scene_id
        """,
        params={"model": model, "batches": batches, "at": at},
    ).to_arrow_table()
    name = _file_name("inputs", model)
    if rows.num_rows:
        lake.write("model_inputs", rows, name=name)
    else:
        lake.remove("model_inputs", name)


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 time from the command line; a bare date or time without zone is UTC.

    >>> parse_time("2026-11-20T08:00:00Z").isoformat()
    '2026-11-20T08:00:00+00:00'
    >>> parse_time("2026-11-20").isoformat()
    '2026-11-20T00:00:00+00:00'
    """
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise InputError(f"not an ISO 8601 time: {text!r} (e.g. 2026-11-20T08:00:00Z)") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def parse_attrs(text: str | None, option: str = "--attrs") -> dict[str, Any]:
    """`--attrs` (or `option`) as a JSON object."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{option} is not valid JSON: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise InputError(f"{option} must be a JSON object, e.g. '{{\"map\": 0.71}}'")
    return value


def _file_name(stage: str, model: str) -> str:
    return f"track-{stage}-{file_stem(model)}"
