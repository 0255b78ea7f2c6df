"""Choosing and keeping scenes: a spread-out subset (`diverse`) and saved selections (`save`).

A selection is one Parquet file `selections/<name>.parquet` (columns of docs/contract.md §2). Saving
records a `mined` event per scene in `events/mined-<name>.parquet`; the file name follows the
selection name, so replacing a selection replaces its events instead of adding duplicates.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from flywheel import events, names, schemas
from flywheel.errors import InputError
from flywheel.lake import Lake


def k_center(vectors: np.ndarray, n: int, weights: np.ndarray | None = None):
    """Greedy k-center (farthest-point sampling): pick `n` rows of `vectors`, each the one
    farthest (cosine distance, times its weight when given) from everything picked so far.

    The first pick is the point farthest from the mean (the weighted one when weighted).
    Returns (rows in pick order, distance of each pick to the nearest earlier pick; for the
    first, its distance to the mean). Greedy k-center covers the space within twice the best
    possible radius, so every well-separated cluster gets a pick before any gets a second.

    >>> x = np.array([[1, 0], [0.99, 0.14], [0, 1], [0.14, 0.99]], dtype=np.float32)
    >>> sorted(k_center(x, 2)[0].tolist())[0] in (0, 1), len(k_center(x, 2)[0])
    (True, 2)
    """
    count = len(vectors)
    n = min(n, count)
    if n <= 0:
        return np.zeros(0, np.int64), np.zeros(0)
    w = np.ones(count) if weights is None else np.asarray(weights, dtype=np.float64)
    centre = vectors.mean(axis=0)
    norm = np.linalg.norm(centre)
    centre = centre / norm if norm > 0 else centre
    first_distance = 1.0 - vectors @ centre
    first = int(np.argmax(first_distance * w))
    picked = [first]
    gaps = [float(first_distance[first])]
    nearest = 1.0 - vectors @ vectors[first]
    nearest[first] = -np.inf
    for _ in range(n - 1):
        choice = int(np.argmax(np.where(np.isfinite(nearest), nearest * w, -np.inf)))
        picked.append(choice)
        gaps.append(float(nearest[choice]))
        nearest = np.minimum(nearest, 1.0 - vectors @ vectors[choice])
        nearest[picked] = -np.inf
    return np.asarray(picked, dtype=np.int64), np.asarray(gaps)


def normalise_weights(values: Sequence[float]) -> np.ndarray:
    """Scores -> weights in (0, 1]: min-max scaled, with a floor so no scene is ruled out."""
    w = np.asarray(values, dtype=np.float64)
    w = np.where(np.isfinite(w), w, np.nanmin(w) if np.isfinite(w).any() else 0.0)
    span = w.max() - w.min() if len(w) else 0.0
    return np.full(len(w), 1.0) if span <= 0 else 0.1 + 0.9 * (w - w.min()) / span


def check_name(name: str) -> str:
    """`name` when it is a usable selection name (the core's one rule, `flywheel.names`)."""
    return names.check_name(name, "selection")


def save(
    lake: Lake,
    name: str,
    scene_ids: Sequence[str],
    scores: Sequence[float] | None,
    query: str,
    replace: bool = False,
) -> Path:
    """Write selection `name` (ranks follow the order given) and its `mined` events."""
    check_name(name)
    ids = list(dict.fromkeys(scene_ids))  # first occurrence wins
    if len(ids) != len(scene_ids):
        keep = {sid: i for i, sid in reversed(list(enumerate(scene_ids)))}
        scores = None if scores is None else [scores[keep[sid]] for sid in ids]
    with lake.lock(f"selection-{name}"):
        earlier: dict[str, dt.datetime] = {}
        if lake.exists("selections", name):
            old = lake.read_file("selections", name).to_pandas()
            if not replace:
                raise InputError(
                    f"selection {name!r} already exists ({len(old)} scenes, saved "
                    f"{old['created_at'].min() if len(old) else 'empty'}); pass replace=True "
                    "(CLI: --replace) to overwrite it, or choose another name",
                    name=name,
                )
            earlier = dict(zip(old["scene_id"], old["created_at"].dt.to_pydatetime(), strict=True))
        created = events.now()
        table = pa.table(
            {
                "selection": pa.array([name] * len(ids), pa.string()),
                "scene_id": pa.array(ids, pa.string()),
                "score": pa.array(
                    [None] * len(ids) if scores is None else [_num(s) for s in scores],
                    pa.float64(),
                ),
                "rank": pa.array(np.arange(1, len(ids) + 1), pa.int64()),
                "query": pa.array([query] * len(ids), pa.string()),
                "created_at": pa.array([created] * len(ids), schemas.UTC_TS),
            }
        )
        path = lake.write("selections", table, name=name)
        # the events file of this selection is rewritten whole (a rerun adds nothing), so it
        # keeps what it held: a scene dropped by a replace was still mined, and a scene kept
        # keeps the time it was first mined
        before = _mined_events(lake, name)
        for sid, at in earlier.items():
            before.setdefault(sid, (at, {"selection": name}))
        current = set(ids)
        kept = [sid for sid in before if sid not in current]
        times = [before[sid][0] if sid in before else created for sid in ids]
        times += [before[sid][0] for sid in kept]
        attrs = [{"selection": name, "rank": r} for r in range(1, len(ids) + 1)]
        attrs += [before[sid][1] | {"dropped": True} for sid in kept]
        events.record(lake, ids + kept, "mined", at=times, attrs=attrs, name=f"mined-{name}")
    return path


def _mined_events(lake: Lake, name: str) -> dict[str, tuple[dt.datetime, dict]]:
    """The `mined` events this selection recorded so far: scene -> (first time, attrs)."""
    data = lake.read_file("events", f"mined-{name}")
    out: dict[str, tuple[dt.datetime, dict]] = {}
    if data is None:
        return out
    for row in data.to_pylist():
        sid, at = row["entity_id"], row["at"]
        if sid not in out or at < out[sid][0]:
            out[sid] = (at, json.loads(row["attrs"] or "{}"))
    return out


def _num(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None
