"""Simulated weeks of loop history, for the demo's trends and for `bench/report.py`.

``simulate_history`` writes what the stages would have written over past weeks, through the
same lake tables and the same ``events.record``: ``logs`` and ``scenes`` (tagged
``simulated_history``, with all-zero embeddings, which mining's similarity, rarity and
diversity leave out; a scenario tag on some), ``ingested``/``mined``/``submitted``/``labeled``
events, ``tasks``, ``batches`` and ``labels`` rows (one annotator may swap two classes), and
one model per week (``trained`` on every batch labeled by then, ``evaluated``, ``deployed``;
every fourth model fails evaluation and is never deployed, so its new scenes ship with the
next one). The report then reads it like any other data: no number is made
up here.

Latencies are lognormal around realistic medians; `slowdown` multiplies the labeling
turnaround of the last 7 days (how the demo shows a ``slow:labeled`` alert).

>>> simulate_history(empty_lake, weeks=2, scenes_per_week=10)  # doctest: +ELLIPSIS
History(scenes=20, events=..., batches=..., models=...)
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from flywheel import events, schemas
from flywheel.lake import Lake, resolve

DAY = 86400.0
WEEK = 7 * DAY
TAG = schemas.SIMULATED_HISTORY  # in the core tag vocabulary, schemas.TAGS
# median latency of each stage (s) and the lognormal sigma
MEDIANS = {"ingested": 20 * 3600, "mined": 1.5 * DAY, "submitted": 8 * 3600, "labeled": 20 * 3600}
SIGMA = 0.6
SCENES_PER_LOG = 60
SLA_S = 48 * 3600.0
PRICE = 0.08  # USD per task
# what the simulated scenes show (the rest: nothing of note), as scene tags
SCENARIO_MIX = {"hard_brake": 0.15, "cut_in": 0.15, "stopped": 0.1, "high_speed": 0.1}


@dataclass
class History:
    scenes: int
    events: int
    batches: int
    models: int


def simulate_history(
    lake: str | Lake | None,
    weeks: int = 8,
    scenes_per_week: int = 60,
    seed: int = 0,
    now: dt.datetime | None = None,
    slowdown: float = 1.0,
    vendors: Sequence[str] = ("simulated",),
    dim: int | None = None,
    mined_per_scene: int = 1,
    relabel_fraction: float = 0.0,
    batch_size: int = 50,
    swap: tuple[str, str, str] | None = None,
    swap_days: float = 14.0,
) -> History:
    """Write `weeks` of history ending at `now` into `lake`; what was written.

    `swap` = (annotator, A, B): from `swap_days` before `now` on, that annotator labels A as B
    and B as A (the fault label quality should catch; every other label is the scene's
    scenario, with 2 % plain mistakes)."""
    lake = resolve(lake)
    now_s = (now or events.now()).timestamp()
    rng = np.random.default_rng(seed)
    # scenarios and labels draw from their own stream: the latencies stay what they were
    labels_rng = np.random.default_rng([seed, 1])
    # the lake's own embedding length and version, so mining still sees one embedding space
    dim, version = _lake_embedding(lake) or (dim or 8, "simulated-history")
    n_events = 0
    models: list[tuple[str, float, list[str]]] = []  # (model, trained at, batches)
    pending: list[tuple[str, float]] = []  # batches labeled, not yet trained on: (id, done)
    start = now_s - weeks * WEEK
    for week in range(weeks):
        w0 = start + week * WEEK
        n = scenes_per_week
        # logs of SCENES_PER_LOG back-to-back 10 s scenes, starting anywhere in the week
        n_logs = -(-n // SCENES_PER_LOG)
        log_start = np.sort(w0 + rng.uniform(0, WEEK, n_logs))
        log_of = np.arange(n) // SCENES_PER_LOG
        collected = log_start[log_of] + 10.0 * (np.arange(n) % SCENES_PER_LOG + 1)
        log_end = np.maximum.reduceat(collected, np.unique(log_of, return_index=True)[1])
        ingested = (log_end + _lognormal(rng, "ingested", n_logs))[log_of]
        mined = ingested + _lognormal(rng, "mined", n)
        submitted = mined + _lognormal(rng, "submitted", n)
        turnaround = _lognormal(rng, "labeled", n)
        turnaround = np.where(submitted > now_s - WEEK, turnaround * slowdown, turnaround)
        labeled = submitted + turnaround
        prefix = f"hist-{seed}-{week:03d}"
        ids = np.array([f"{prefix}-{i:06d}" for i in range(n)], dtype=object)
        log_ids = np.array([f"{prefix}-log-{i // SCENES_PER_LOG:04d}" for i in range(n)])
        kinds = list(SCENARIO_MIX)
        picked = labels_rng.uniform(size=n)
        bounds = np.cumsum(list(SCENARIO_MIX.values()))
        scenario = np.array(
            [kinds[i] if i < len(kinds) else None for i in np.searchsorted(bounds, picked)],
            dtype=object,
        )
        _write_scenes(lake, prefix, ids, log_ids, collected, ingested, dim, version, scenario)
        n_events += _write_log_events(lake, prefix, log_ids, ingested)

        # mined: once per selection the scene was saved in (popular scenes are saved often)
        for k in range(mined_per_scene):
            seen = mined <= now_s
            extra = k * _lognormal(rng, "mined", n) / 2
            at = mined + extra
            keep = seen & (at <= now_s)
            events.record(
                lake,
                list(ids[keep]),
                "mined",
                at=_times(at[keep]),
                attrs={"selection": f"{prefix}-sel-{k}"},
                name=f"{prefix}-mined-{k}",
            )
            n_events += int(keep.sum())

        batch_of = np.array([f"{prefix}-b{i // batch_size:04d}" for i in range(n)])
        vendor_of = np.array([vendors[(i // batch_size) % len(vendors)] for i in range(n)])
        n_events += _write_labeling(
            lake,
            prefix,
            ids,
            batch_of,
            vendor_of,
            submitted,
            labeled,
            now_s,
            rng,
            relabel_fraction,
        )
        done = (submitted <= now_s) & (labeled <= now_s)
        swapping = (swap, now_s - swap_days * DAY) if swap else None
        _write_labels(lake, ids[done], batch_of[done], vendor_of[done], labeled[done],
                      scenario[done], labels_rng, swapping)  # fmt: skip
        for batch in dict.fromkeys(batch_of):
            rows = batch_of == batch
            if (submitted[rows] <= now_s).all() and (labeled[rows] <= now_s).all():
                pending.append((batch, float(labeled[rows].max())))

        # one training run per week, two days after the week ends, on what is labeled by then
        train_at = w0 + WEEK + 2 * DAY
        if train_at <= now_s:
            # each run trains on every batch labeled so far (a growing training set)
            used = [b for b, done in pending if done <= train_at]
            if used:
                models.append((f"{prefix}-model", train_at, used))
    for i, (model, trained, used) in enumerate(models):
        events.record(
            lake,
            [model],
            "trained",
            at=_times([trained])[0],
            attrs={"batches": sorted(used)},
            name=f"{model}-trained",
        )
        n_events += 1
        evaluated = trained + DAY * float(rng.uniform(0.5, 1.5))
        if evaluated <= now_s:
            events.record(
                lake,
                [model],
                "evaluated",
                at=_times([evaluated])[0],
                attrs={"passed": i % 4 != 3},
                name=f"{model}-evaluated",
            )
            n_events += 1
            deployed = evaluated + DAY * float(rng.uniform(1, 3))
            if i % 4 != 3 and deployed <= now_s:
                events.record(
                    lake, [model], "deployed", at=_times([deployed])[0], name=f"{model}-deployed"
                )
                n_events += 1
    batches = {b for m in models for b in m[2]}
    return History(weeks * scenes_per_week, n_events, len(batches), len(models))


def _lognormal(rng: np.random.Generator, stage: str, n: int) -> np.ndarray:
    return MEDIANS[stage] * rng.lognormal(0.0, SIGMA, n)


def _times(seconds) -> list[dt.datetime]:
    return [dt.datetime.fromtimestamp(float(s), dt.UTC) for s in seconds]


def _ts(seconds: np.ndarray) -> pa.Array:
    return pa.array((np.asarray(seconds) * 1e6).astype("int64"), pa.int64()).cast(schemas.UTC_TS)


def _lake_embedding(lake: Lake) -> tuple[int, str] | None:
    if not lake.files("scenes"):
        return None
    row = (
        lake.connect()
        .execute("SELECT len(embedding), embedding_version FROM scenes LIMIT 1")
        .fetchone()
    )
    return (int(row[0]), row[1]) if row else None


def _write_labels(lake, ids, batch_of, vendor_of, labeled, scenario, rng, swapping) -> None:
    """A label per labeled task, one file per batch as labeling writes them: the scene's
    scenario (or `other`) in Label Studio's result format, by one of the vendor's annotators;
    2 % plain mistakes, and the swap from its time on."""
    from labeling.vendors.simulated import ANNOTATORS, CLASSES

    n = len(ids)
    if not n:
        return
    who = np.array(ANNOTATORS)[rng.integers(0, len(ANNOTATORS), n)]
    wrong = rng.uniform(size=n) < 0.02
    mistakes = np.array(CLASSES)[rng.integers(0, len(CLASSES), n)]
    given = []
    for i in range(n):
        label = str(mistakes[i]) if wrong[i] else (scenario[i] or "other")
        if swapping is not None:
            (annotator, a, b), since = swapping
            if who[i] == annotator and labeled[i] >= since:
                label = b if label == a else a if label == b else label
        given.append(label)
    results = [
        json.dumps([{"from_name": "scenario", "to_name": "scene", "type": "choices",
                     "value": {"choices": [g]}}], sort_keys=True)
        for g in given
    ]  # fmt: skip
    table = schemas.filled(
        {
            "batch_id": pa.array(batch_of, pa.string()),
            "scene_id": pa.array(ids, pa.string()),
            "vendor": pa.array(vendor_of, pa.string()),
            "annotator": pa.array(who, pa.string()),
            "result": pa.array(results, pa.string()),
            "completed_at": _ts(labeled),
            "external_id": pa.array([f"{s}-task" for s in ids], pa.string()),
            "classes": pa.array([[g] for g in given], pa.list_(pa.string())),
            "objects": pa.array([[] for _ in given], pa.list_(pa.string())),
        },
        schemas.SCHEMAS["labels"],
        n,
    )
    for batch in dict.fromkeys(batch_of):
        rows = np.flatnonzero(batch_of == batch)
        lake.write("labels", table.take(pa.array(rows)), name=str(batch))


def _write_scenes(lake, prefix, ids, log_ids, collected, ingested, dim, version, scenario) -> None:
    n = len(ids)
    end_ns = (collected * 1e9).astype("int64")
    zeros = np.zeros(n * dim, dtype=np.float32)
    # every column of the lake's `scenes` schema: what a simulated scene does not have is null
    scenes = schemas.filled(
        {
            "scene_id": pa.array(ids, pa.string()),
            "log_id": pa.array(log_ids, pa.string()),
            "start_ns": pa.array(end_ns - 10_000_000_000),
            "end_ns": pa.array(end_ns),
            "duration_s": pa.array(np.full(n, 10.0)),
            "max_speed": pa.array(np.zeros(n)),
            "min_accel": pa.array(np.zeros(n)),
            "min_object_distance": pa.array(np.full(n, np.nan)),
            "n_tracks": pa.array(np.zeros(n, dtype="int64")),
            "n_pedestrians": pa.array(np.zeros(n, dtype="int64")),
            "n_vehicles": pa.array(np.zeros(n, dtype="int64")),
            "tags": pa.array([[k, TAG] if k else [TAG] for k in scenario], pa.list_(pa.string())),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(zeros), dim).cast(
                pa.list_(pa.float32())
            ),
            "embedding_version": pa.array([version] * n, pa.string()),
        },
        schemas.SCHEMAS["scenes"],
        n,
    )
    lake.write("scenes", scenes, name=prefix)
    # one `logs` row per log, written last: it publishes the log's scenes
    first = np.unique(log_ids, return_index=True)[1]
    count = np.bincount(np.unique(log_ids, return_inverse=True)[1])
    logs = schemas.filled(
        {
            "log_id": pa.array(log_ids[first], pa.string()),
            "source_uri": pa.array([f"simulated-history://{x}" for x in log_ids[first]]),
            "bytes": pa.array(np.zeros(len(first), dtype="int64")),
            "message_count": pa.array(np.zeros(len(first), dtype="int64")),
            "start_ns": pa.array(end_ns[first] - 10_000_000_000),
            "end_ns": pa.array(end_ns[first] + (count - 1) * 10_000_000_000),
            "ingested_at": _ts(ingested[first]),
            "n_scenes": pa.array(count.astype("int64")),
            "scene_seconds": pa.array(np.full(len(first), 10.0)),
            "embedding_version": pa.array([version] * len(first), pa.string()),
        },
        schemas.SCHEMAS["logs"],
        len(first),
    )
    lake.write("logs", logs, name=prefix)


def _write_log_events(lake, prefix, log_ids, ingested) -> int:
    first = np.unique(log_ids, return_index=True)[1]
    at = ingested[first]
    events.record(
        lake,
        list(log_ids[first]),
        "ingested",
        at=_times(at),
        attrs={"source_uri": "simulated-history"},
        name=f"{prefix}-ingested",
    )
    return len(first)


def _write_labeling(
    lake, prefix, ids, batch_of, vendor_of, submitted, labeled, now_s, rng, relabel_fraction
) -> int:
    sent = submitted <= now_s
    done = sent & (labeled <= now_s)
    attrs = [
        {"batch_id": b, "vendor": v, "external_id": f"{s}-task"}
        for s, b, v in zip(ids, batch_of, vendor_of, strict=True)
    ]
    events.record(
        lake,
        list(ids[sent]),
        "submitted",
        at=_times(submitted[sent]),
        attrs=[a for a, k in zip(attrs, sent, strict=True) if k],
        name=f"{prefix}-submitted",
    )
    events.record(
        lake,
        list(ids[done]),
        "labeled",
        at=_times(labeled[done]),
        attrs=[a for a, k in zip(attrs, done, strict=True) if k],
        name=f"{prefix}-labeled",
    )
    written = int(sent.sum() + done.sum())
    again = done & (rng.uniform(size=len(ids)) < relabel_fraction)
    if again.any():  # a second annotation pass: a later `labeled` event the cycle ignores
        later = labeled[again] + _lognormal(rng, "labeled", int(again.sum()))
        events.record(
            lake,
            list(ids[again]),
            "labeled",
            at=_times(later),
            attrs=[a for a, k in zip(attrs, again, strict=True) if k],
            name=f"{prefix}-relabeled",
        )
        written += int(again.sum())
    # `tasks` and the outbox (`batches`) as labeling keeps them: one file per batch, every
    # column of their schemas (what this history does not know is null)
    m = int(sent.sum())
    if not m:
        return written
    completed = np.where(done, labeled, np.nan)[sent]
    sent_batches = batch_of[sent]
    first_sent: dict[str, float] = {}
    for b, t in zip(sent_batches, submitted[sent], strict=True):
        first_sent[b] = min(first_sent.get(b, t), t)
    tasks = schemas.filled(
        {
            "batch_id": pa.array(sent_batches, pa.string()),
            "scene_id": pa.array(ids[sent], pa.string()),
            "vendor": pa.array(vendor_of[sent], pa.string()),
            "external_id": pa.array([f"{s}-task" for s in ids[sent]], pa.string()),
            "status": pa.array(np.where(done[sent], "labeled", "submitted"), pa.string()),
            "submitted_at": _ts(submitted[sent]),
            "completed_at": pa.array(
                [None if c != c else int(c * 1e6) for c in completed], pa.int64()
            ),
        },
        schemas.SCHEMAS["tasks"],
        m,
    )
    outbox = schemas.filled(
        {
            "batch_id": pa.array(sent_batches, pa.string()),
            "vendor": pa.array(vendor_of[sent], pa.string()),
            "selection": pa.array([f"{prefix}-sel-0"] * m, pa.string()),
            "state": pa.array(["submitted"] * m, pa.string()),
            "priority": pa.array(np.zeros(m, dtype="int64")),
            "position": pa.array(np.arange(m, dtype="int64")),
            "scene_id": pa.array(ids[sent], pa.string()),
            "price_per_task": pa.array(np.full(m, PRICE)),
            "sla_s": pa.array(np.full(m, SLA_S)),
            "created_at": _ts(np.array([first_sent[b] for b in sent_batches])),
        },
        schemas.SCHEMAS["batches"],
        m,
    )
    # batches are contiguous runs of rows
    starts = np.flatnonzero(np.r_[True, sent_batches[1:] != sent_batches[:-1]])
    ends = np.r_[starts[1:], m]
    for a, b in zip(starts, ends, strict=True):
        batch = str(sent_batches[a])
        rows = outbox.slice(a, b - a)
        cost = pa.array(np.full(b - a, PRICE * (b - a)))
        lake.write(
            "batches",
            rows.set_column(rows.schema.get_field_index("cost"), "cost", cost),
            name=batch,
        )
        lake.write("tasks", tasks.slice(a, b - a), name=batch)
    return written
