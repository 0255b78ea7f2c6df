"""`flywheel track`: the stages that happen outside the platform (training, evaluation, deployment).

Each is an event of a model id in `events`: ``trained`` names the label batches the run used
(``attrs.batches``), which is how the report joins scenes to models. Recording the same stage
of the same model again replaces the earlier record (a correction or a backfill), so it counts
once.

>>> track("lake", "trained", "detector-v7", batches=["sel-a-1"], at=None)  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flywheel import events
from flywheel.errors import InputError
from flywheel.lake import Lake, resolve

TRACKED = ("trained", "evaluated", "deployed")


def track(
    lake: str | Lake | None,
    stage: str,
    model: str,
    batches: Sequence[str] = (),
    at: dt.datetime | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Record that `model` reached `stage` at `at` (default now); the events file written."""
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
        if not batches:
            raise InputError(
                f"`trained` needs the label batches model {model!r} was trained on (--batch)"
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
        attrs["batches"] = sorted(set(batches))
    else:
        if batches:
            raise InputError(f"--batch belongs to `trained`, not `{stage}`")
        trained = con.execute(
            "SELECT min(\"at\") FROM events WHERE stage = 'trained' AND entity_id = ?", [model]
        ).fetchone()[0]
        if trained is None:
            raise InputError(
                f"model {model!r} has no training record; run `flywheel track trained "
                f"--model {model} --batch BATCH_ID …` first"
            )
        if at < trained:
            raise InputError(
                f"model {model!r} cannot be {stage} at {at.isoformat()}, before it was trained "
                f"({trained.isoformat()})"
            )
    return events.record(lake, [model], stage, at=at, attrs=attrs, name=_file_name(stage, model))


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


def parse_attrs(text: str | None) -> dict[str, Any]:
    """`--attrs` as a JSON object."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--attrs is not valid JSON: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise InputError("--attrs must be a JSON object, e.g. '{\"map\": 0.71}'")
    return value


def _file_name(stage: str, model: str) -> str:
    # readable, safe as a file name, and distinct for ids that differ only in odd characters
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", model)[:80]
    digest = hashlib.sha1(model.encode()).hexdigest()[:8]
    return f"track-{stage}-{safe}-{digest}"
