"""Triggers: named conditions over every sample of every log, versioned, run exactly once.

A trigger's definition lives in the `triggers` table, one row per version: changing its
condition adds version N+1, and the hits of N stay queryable. `run` evaluates each trigger on
every published log that has no run for its current version yet, and ingest runs it on the
logs it adds. Each run writes its hits (`trigger_hits`, one file per run) and then one
`trigger_runs` row per log, which publishes them: the `trigger_hits` view shows only hits
whose run is recorded, so a crash between the two leaves nothing partial visible, and the
rerun evaluates those logs again under a new run id.

>>> define(lake, "hard_brake", when="accel < -4", for_s=0.5).version
1
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import duckdb
import pandas as pd
import pyarrow as pa

from flywheel import names, schemas
from flywheel.config import load_config
from flywheel.errors import InputError
from flywheel.events import now
from flywheel.lake import Lake, resolve
from flywheel.query import check_expression
from flywheel.sql import literal
from ingest import hits as _hits
from ingest import signals

LOGS_PER_RUN = 200  # logs evaluated per frame: bounds memory at ~200 logs of samples

# The runs whose hits count: per (trigger, version, log) the latest one, since a log replaced
# by `ingest --force` is evaluated again and the earlier run's hits describe old content.
LATEST_RUNS = (
    "SELECT run_id FROM trigger_runs QUALIFY row_number() OVER "
    '(PARTITION BY "trigger", version, log_id ORDER BY "at" DESC, run_id DESC) = 1'
)
# The hits of each trigger's current version, from its latest runs (SQL over the lake's views).
CURRENT_HITS = (
    'SELECT h.* FROM trigger_hits h JOIN (SELECT name AS "trigger", max(version) AS version '
    'FROM triggers GROUP BY name) USING ("trigger", version) '
    f"WHERE h.run_id IN ({LATEST_RUNS})"
)


@dataclass(frozen=True)
class Trigger:
    """One version of a trigger's definition."""

    name: str
    version: int
    when: str
    for_s: float = 0.0
    gap_s: float = 0.0
    then: str | None = None
    within_s: float | None = None
    columns: Mapping[str, str] | None = None  # the user's derived columns it uses

    @property
    def spec(self) -> _hits.Spec:
        return _hits.Spec(self.when, self.for_s, self.gap_s, self.then, self.within_s)

    def digest(self) -> str:
        body = {k: v for k, v in asdict(self).items() if k not in ("name", "version")}
        if not body["columns"]:
            del body["columns"]  # digests of triggers without derived columns stay as they were
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def used_columns(derived: Mapping[str, str], *exprs: str | None) -> dict[str, str]:
    """The derived columns (name -> expression) that the expressions name, quoted or not."""
    text = " ".join(e for e in exprs if e)
    return {
        name: expr
        for name, expr in sorted(derived.items())
        if re.search(rf"(?<![\w$]){re.escape(name)}(?![\w$])", text, re.IGNORECASE)
    }


def derived_columns(derived: Mapping[str, str] | None = None) -> dict[str, str]:
    """The user's derived frame columns (`[triggers.columns]` in flywheel.toml unless given),
    each checked as one expression over the frame's own columns."""
    if derived is None:
        derived = load_config().triggers.columns or {}
    clash = sorted(set(derived) & set(signals.NAMES))
    if clash:
        raise InputError(
            f"[triggers.columns] {', '.join(clash)}: already a column of the frame; "
            "choose another name"
        )
    for name, expr in derived.items():
        check_expression(expr, "frame", signals.NAMES, what=f"[triggers.columns] {name}")
    return dict(derived)


def columns(derived: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """The frame's columns with units (`flywheel trigger columns`), the user's own last."""
    own = derived_columns(derived)
    return [
        *({"name": c.name, "unit": c.unit, "description": c.description} for c in signals.COLUMNS),
        *({"name": n, "unit": "", "description": f"yours: {e}"} for n, e in own.items()),
    ]


def check(
    when: str,
    for_s: float = 0.0,
    gap_s: float = 0.0,
    then: str | None = None,
    within_s: float | None = None,
    derived: Iterable[str] = (),
) -> None:
    """Refuse a condition that is not one read-only expression over the frame's columns."""
    columns = (*signals.NAMES, *derived)
    check_expression(when, "frame", columns, what="--when")
    if then is not None:
        check_expression(then, "frame", columns, what="--then")
        if within_s is None:
            raise InputError("--then needs --within SECONDS: how soon after --when it must hold")
    elif within_s is not None:
        raise InputError("--within applies to --then; give --then EXPR too")
    for flag, value in (("--for", for_s), ("--gap", gap_s), ("--within", within_s or 0.0)):
        if not (value >= 0 and value < float("inf")):
            raise InputError(f"{flag} must be a finite number of seconds >= 0, not {value!r}")


def define(
    lake: str | Lake | None,
    name: str,
    when: str,
    for_s: float = 0.0,
    gap_s: float = 0.0,
    then: str | None = None,
    within_s: float | None = None,
    derived: Mapping[str, str] | None = None,
) -> Trigger:
    """Add a trigger, or a new version of it when its definition changed (same: no-op)."""
    lake = resolve(lake)
    names.check_name(name, "trigger")
    derived = derived_columns(derived)
    check(when, for_s, gap_s, then, within_s, derived)
    with lake.lock(f"trigger-{name}"):
        current = definitions(lake).get(name)
        uses = used_columns(derived, when, then) or None
        candidate = Trigger(
            name, 1, when.strip(), for_s, gap_s, then and then.strip(), within_s, uses
        )
        if current is not None and current.digest() == candidate.digest():
            return current
        version = 1 if current is None else current.version + 1
        made = Trigger(**{**asdict(candidate), "version": version})
        row = {**asdict(made), "digest": made.digest(), "added_at": now()}
        row["columns"] = json.dumps(dict(uses), sort_keys=True) if uses else None
        lake.write(
            "triggers",
            pa.Table.from_pylist([row], schemas.SCHEMAS["triggers"]),
            name=f"{name}-v{version}",
        )
        return made


def definitions(lake: str | Lake | None = None) -> dict[str, Trigger]:
    """The current (latest) version of every trigger, by name."""
    rows = (
        resolve(lake)
        .connect()
        .execute(
            'SELECT name, version, "when", for_s, gap_s, "then", within_s, "columns" '
            "FROM triggers "
            "QUALIFY row_number() OVER (PARTITION BY name ORDER BY version DESC) = 1 ORDER BY name"
        )
        .fetchall()
    )
    return {r[0]: Trigger(*r[:7], json.loads(r[7]) if r[7] else None) for r in rows}


def _current(lake: Lake, trigger: Trigger, derived: Mapping[str, str]) -> Trigger:
    """`trigger`, or its next version when a derived column it uses changed its expression in
    `[triggers.columns]` (its hits then describe another condition: all logs run again)."""
    stored = dict(trigger.columns or {})
    gone = sorted(set(stored) - set(derived))
    if gone:
        raise InputError(
            f"trigger {trigger.name!r} uses {', '.join(gone)}, which [triggers.columns] no "
            "longer defines: define it again, or change the trigger"
        )
    if used_columns(derived, trigger.when, trigger.then) == stored:
        return trigger
    return define(
        lake, trigger.name, trigger.when, trigger.for_s, trigger.gap_s, trigger.then,
        trigger.within_s, derived,
    )  # fmt: skip


def run(
    lake: str | Lake | None = None,
    names_: Sequence[str] | None = None,
    log_ids: Sequence[str] | None = None,
    derived: Mapping[str, str] | None = None,
    workers: int = 1,
    scheduler: str | None = None,
) -> dict[str, int]:
    """Evaluate triggers (all, or `names_`) on every log not yet evaluated for their current
    version (or only `log_ids`); hits found per trigger. Reruns find nothing to do.

    With `workers` > 1 the logs are split over that many local processes (Dask, like
    ingest), with `scheduler` over a Dask cluster's workers (which must see the lake); each
    part is its own run, published by its own `trigger_runs` rows.
    """
    lake = resolve(lake)
    derived = derived_columns(derived)
    known = definitions(lake)
    wanted = list(known) if names_ is None else list(names_)
    missing = [n for n in wanted if n not in known]
    if missing:
        raise InputError(
            f"no trigger named {', '.join(missing)}; known: {', '.join(known) or 'none'} "
            "(add one with `flywheel trigger add NAME --when EXPR`)"
        )
    found: dict[str, int] = {}
    current = [_current(lake, known[name], derived) for name in sorted(set(wanted))]
    with contextlib.ExitStack() as held:  # every trigger's lock, in name order: no deadlock
        for trigger in current:
            held.enter_context(lake.lock(f"trigger-{trigger.name}"))
        # triggers with the same logs to do share one frame per part (the frame costs more
        # than evaluating a condition on it)
        groups: dict[tuple[str, ...], list[Trigger]] = {}
        for trigger in current:
            groups.setdefault(tuple(_pending(lake, trigger, log_ids)), []).append(trigger)
        for todo, group in groups.items():
            parts = max(1, workers) if scheduler is None else max(2, workers)
            size = max(1, min(LOGS_PER_RUN, -(-len(todo) // parts)))
            chunks = [list(todo[i : i + size]) for i in range(0, len(todo), size)]
            if (workers <= 1 and scheduler is None) or len(chunks) <= 1:
                counts = [_run_logs(lake, group, c, derived) for c in chunks]
            else:
                counts = _run_on_dask(lake, group, chunks, derived, workers, scheduler)
            for i, trigger in enumerate(group):
                found[trigger.name] = sum(c[i] for c in counts)
    return {name: found[name] for name in wanted}


def _run_chunk(root: str, group: list[Trigger], log_ids: list[str], derived) -> list[int]:
    """One part of a parallel run, in a worker process."""
    return _run_logs(Lake(root), group, log_ids, derived)


def _run_on_dask(lake, group, chunks, derived, workers, scheduler) -> list[list[int]]:
    import dask

    tasks = [dask.delayed(_run_chunk, pure=False)(lake.uri, group, c, derived) for c in chunks]
    if scheduler:
        from flywheel.cluster import client as cluster_client

        with cluster_client(scheduler) as client:
            return list(client.gather(client.compute(tasks)))
    with dask.config.set({"multiprocessing.context": "forkserver"}):
        return list(dask.compute(*tasks, scheduler="processes", num_workers=workers))


def _pending(lake: Lake, trigger: Trigger, log_ids: Sequence[str] | None) -> list[str]:
    con = lake.connect()
    # a run older than its log's ingest evaluated content that `ingest --force` replaced
    query = (
        "SELECT log_id FROM logs l WHERE log_id NOT IN (SELECT r.log_id FROM trigger_runs r "
        'WHERE r."trigger" = ? AND r.version = ? AND r."at" >= l.ingested_at) ORDER BY log_id'
    )
    pending = [r[0] for r in con.execute(query, [trigger.name, trigger.version]).fetchall()]
    if log_ids is not None:
        wanted = set(log_ids)
        pending = [p for p in pending if p in wanted]
    return pending


def _run_logs(lake: Lake, group: list[Trigger], log_ids: list[str], derived) -> list[int]:
    """Evaluate each trigger of `group` on `log_ids` over one frame; hits found per trigger.
    Each trigger's run writes its hits, then its `trigger_runs` rows, which publish them."""
    con = lake.connect()
    only = _build_frame(con, log_ids, derived)
    frame = _hits.Frame(con)
    scenes = f"(SELECT * FROM scenes{only})"
    found = []
    for trigger in group:
        table = _hits.find(con, trigger.spec, frame, scenes)
        _publish(lake, trigger, log_ids, table)
        found.append(table.num_rows)
    return found


def _publish(lake: Lake, trigger: Trigger, log_ids: list[str], found: pa.Table) -> None:
    run_id = uuid.uuid4().hex[:16]
    at = now()
    n = found.num_rows
    hits = pa.table(
        {
            "trigger": [trigger.name] * n,
            "version": pa.array([trigger.version] * n, pa.int64()),
            "run_id": [run_id] * n,
            **{c: found[c] for c in found.column_names},
        }
    )
    if n:  # the hits first; the run rows below publish them
        lake.write("trigger_hits", schemas.conform("trigger_hits", hits), name=run_id)
    counts = pd.Series(found["log_id"].to_pylist(), dtype=object).value_counts()
    runs = pa.table(
        {
            "run_id": [run_id] * len(log_ids),
            "trigger": [trigger.name] * len(log_ids),
            "version": pa.array([trigger.version] * len(log_ids), pa.int64()),
            "log_id": log_ids,
            "hits": pa.array([int(counts.get(i, 0)) for i in log_ids], pa.int64()),
            "at": pa.array([at] * len(log_ids), schemas.UTC_TS),
        }
    )
    lake.write("trigger_runs", runs, name=run_id)


def evaluate_on(
    con: duckdb.DuckDBPyConnection,
    spec: _hits.Spec,
    log_ids: Sequence[str] | None = None,
    derived: Mapping[str, str] | None = None,
) -> pa.Table:
    """Hits of `spec` on a lake connection (its views), for `log_ids` or every log."""
    only = _build_frame(con, log_ids, derived)
    return _hits.find(con, spec, "frame", f"(SELECT * FROM scenes{only})")


def _build_frame(con, log_ids, derived) -> str:
    """Materialise the frame table; the WHERE clause that limits the lake's views to it.

    A log's frame is its `signals` rows, built at ingest; a log without them (ingested before
    the lake stored frames) or with another `frame_version` (the frame's definition changed
    since) gets its frame built here from `ego` and `objects`."""
    if log_ids is not None:
        con.register("_trigger_logs", pa.table({"log_id": pa.array(list(log_ids), pa.string())}))
        only = " WHERE log_id IN (SELECT log_id FROM _trigger_logs)"
    else:
        only = ""
    current = f"frame_version = {literal(signals.FRAME_VERSION)}"
    stored = f"SELECT * EXCLUDE (frame_version) FROM signals WHERE {current}"
    if only:
        stored += " AND log_id IN (SELECT log_id FROM _trigger_logs)"
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _unframed AS "
        f"SELECT log_id FROM logs{only} EXCEPT SELECT DISTINCT log_id FROM signals WHERE {current}"
    )
    parts = [stored]
    if con.execute("SELECT count(*) FROM _unframed").fetchone()[0]:
        unframed = " WHERE log_id IN (SELECT log_id FROM _unframed)"
        probe = f"SELECT count(*) > 0 FROM (SELECT 1 FROM objects{unframed} LIMIT 1)"
        objects = f"(SELECT * FROM objects{unframed})" if con.execute(probe).fetchone()[0] else None
        parts.append(signals.frame_sql(f"(SELECT * FROM ego{unframed})", objects))
    signals.build(con, " UNION ALL BY NAME ".join(f"({p})" for p in parts), derived)
    return only


def evaluate(
    lake: str | Lake | None,
    when: str,
    for_s: float = 0.0,
    gap_s: float = 0.0,
    then: str | None = None,
    within_s: float | None = None,
    derived: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The hits of a condition over every log, without defining a trigger (`m.trigger`): the
    columns of `trigger hits`, `trigger` null, in log and time order."""
    lake = resolve(lake)
    derived = derived_columns(derived)
    check(when, for_s, gap_s, then, within_s, derived)
    spec = _hits.Spec(when.strip(), for_s, gap_s, then and then.strip(), within_s)
    found = evaluate_on(lake.connect(), spec, None, derived).to_pandas()
    found.insert(0, "trigger", pd.Series([None] * len(found), dtype=object))
    return found


def scene_triggers(lake: str | Lake | None, scene_ids: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Per scene of `scene_ids`, the triggers whose current hits overlap it (sorted names):
    the `triggers` column a `where` can use, e.g. ``list_contains(triggers, 'hard_brake')``."""
    con = resolve(lake).connect()
    order = pa.array(range(len(scene_ids)), pa.int64())
    con.register("_scenes", pa.table({"scene_id": scene_ids, "i": order}))
    found = con.sql(f"""
        WITH pairs AS (
            SELECT DISTINCT "trigger", unnest(scene_ids) AS scene_id FROM ({CURRENT_HITS})
        )
        SELECT coalesce(list(p."trigger" ORDER BY p."trigger")
                        FILTER (p."trigger" IS NOT NULL), []) AS names
        FROM _scenes s LEFT JOIN pairs p USING (scene_id)
        GROUP BY s.i ORDER BY s.i""").to_arrow_table()
    return found["names"].combine_chunks().cast(pa.list_(pa.string()))


def hits(lake: str | Lake | None, name: str, version: int | None = None) -> pd.DataFrame:
    """The hits of trigger `name` (its current version unless `version`), in time order."""
    lake = resolve(lake)
    known = definitions(lake)
    if name not in known:
        raise InputError(f"no trigger named {name!r}; known: {', '.join(known) or 'none'}")
    version = version or known[name].version
    return (
        lake.connect()
        .execute(
            # a run's hits are published by its run rows: hits of a run that died before are not
            # and of a log evaluated again (replaced by ingest --force), the latest run only
            'SELECT * FROM trigger_hits WHERE "trigger" = ? AND version = ? '
            f"AND run_id IN ({LATEST_RUNS}) ORDER BY log_id, start_ns",
            [name, version],
        )
        .df()
    )


def frame(
    con: duckdb.DuckDBPyConnection,
    log_ids: Sequence[str] | None = None,
    derived: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The signal frame of `log_ids` (or every log) on a lake connection, as a DataFrame."""
    _build_frame(con, log_ids, derived)
    return con.sql("SELECT * FROM frame ORDER BY log_id, t_ns").df()
