"""Purge: delete every row that came from some logs, from every table, crash-safe
(docs/contract.md §7).

Which rows came from a log is read off the schemas, not listed per table: a row of a per-log
table or of `logs` is the log's (its files are named by the log id and go whole); in every other
table a row is the log's when its `log_id`, `scene_id` or `entity_id` (an event's) names the
log or one of its scenes. The lineage records (`LINEAGE_TABLES`: sources, datasets, the inputs
a model was trained on) stay, so a model still says what it used.

The work is planned first: the logs, their scenes and the rows each table will lose are written
to `_purge/<name>.json` before anything is deleted. A rerun after a crash reads that plan, so it
deletes the same rows even though the logs' own rows, which the plan was read from, are gone.
Each file is rewritten whole under its own name (an atomic replace) without the purged rows, or
deleted when none is left; files without such rows are not touched, so every other row keeps
every value (and its file its bytes). Tables other than `logs` and the per-log ones go first,
then `logs` (which hides the per-log rows at once), then the per-log files.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flywheel import schemas
from flywheel.lake import Lake
from flywheel.sql import identifier

PLAN_DIR = "_purge"
# records of what was used, which a purge keeps (the contract's "lineage records stay")
LINEAGE_TABLES = ("sources", "datasets", "model_inputs")
KEYS = ("log_id", "scene_id", "entity_id")  # the columns that tie a row to a log
# per-batch tables written under a labeling lock (labeling.sync, labeling.schedule)
LABELING_TABLES = ("batches", "tasks", "labels")


@dataclass
class PurgeResult:
    logs: list[str]
    purged: dict[str, int] = field(default_factory=dict)  # table -> rows deleted


def plan_file(name: str) -> str:
    return f"{PLAN_DIR}/{name}.json"


def purge_logs(lake: Lake, name: str, log_ids: Sequence[str]) -> PurgeResult:
    """Delete every row derived from `log_ids` (see the module docstring); `name` names the
    plan, so a rerun with the same name after a crash finishes the same purge."""
    stored = lake.read_text(plan_file(name))
    plan = json.loads(stored) if stored else _plan(lake, log_ids)
    if stored is None:
        lake.write_text(plan_file(name), json.dumps(plan, sort_keys=True))
    logs, scenes = set(plan["logs"]), set(plan["scenes"])
    ids = {"log_id": logs, "scene_id": scenes, "entity_id": logs | scenes}
    with _labeling_locks(lake):
        for table in _row_tables():
            for file in lake.snapshot([table]).files[table]:
                _rewrite(lake, file.rel, ids)
    for log_id in sorted(logs):
        lake.remove("logs", log_id)  # unpublishes the log: its per-log rows vanish from views
    for log_id in sorted(logs):
        for table in schemas.PER_LOG_TABLES:
            lake.remove(table, log_id)
        lake.remove("quarantine", log_id)  # what a salvaged log could not land
    lake.delete(plan_file(name))
    return PurgeResult(sorted(logs), {t: n for t, n in plan["purged"].items() if n})


def _row_tables() -> list[str]:
    """The tables whose rows are filtered one by one: not per-log, not lineage records."""
    whole = {"logs", "quarantine", *schemas.PER_LOG_TABLES, *LINEAGE_TABLES}
    return [
        t for t in schemas.TABLES if t not in whole and set(KEYS) & set(schemas.SCHEMAS[t].names)
    ]


def _plan(lake: Lake, log_ids: Sequence[str]) -> dict:
    """The logs, their scenes, and how many rows of each table are theirs (counted now)."""
    logs = sorted(set(log_ids))
    with lake.connect() as con:
        con.execute(
            "CREATE TEMP TABLE purge_logs AS SELECT unnest($ids::VARCHAR[]) AS id", {"ids": logs}
        )
        scenes = [
            r[0]
            for r in con.execute(
                "SELECT scene_id FROM scenes WHERE log_id IN (SELECT id FROM purge_logs) "
                "ORDER BY scene_id"
            ).fetchall()
        ]
        con.execute(
            "CREATE TEMP TABLE purge_ids AS SELECT id FROM purge_logs "
            "UNION SELECT unnest($ids::VARCHAR[])",
            {"ids": scenes},
        )
        counts = {}
        for table in ("logs", *schemas.PER_LOG_TABLES, *_row_tables()):
            columns = [k for k in KEYS if k in schemas.SCHEMAS[table].names]
            test = " OR ".join(f"{k} IN (SELECT id FROM purge_ids)" for k in columns)
            found = con.execute(f"SELECT count(*) FROM {identifier(table)} WHERE {test}")
            counts[table] = found.fetchone()[0]
    return {"logs": logs, "scenes": scenes, "purged": counts}


def _rewrite(lake: Lake, rel: str, ids: dict[str, set[str]]) -> int:
    """Rewrite the file `rel` without the rows `ids` name; the rows it dropped."""
    with lake.open(rel) as handle:
        names = pq.read_schema(handle).names
    columns = [k for k in KEYS if k in names]
    if not columns:
        return 0
    with lake.open(rel) as handle:
        keys = pq.read_table(handle, columns=columns)
    drop = None
    for column in columns:
        hit = pc.is_in(keys.column(column), pa.array(sorted(ids[column]), pa.string()))
        hit = pc.fill_null(hit, False)
        drop = hit if drop is None else pc.or_(drop, hit)
    dropped = pc.sum(drop).as_py() or 0
    if not dropped:
        return 0
    if dropped == keys.num_rows:
        lake.delete(rel)
        return dropped
    with lake.open(rel) as handle:
        table = pq.read_table(handle)
    kept = table.filter(pc.invert(drop))
    lake.put(rel, lambda path: pq.write_table(kept, path, compression="zstd"))
    return dropped


@contextlib.contextmanager
def _labeling_locks(lake: Lake) -> Iterator[None]:
    """The locks labeling holds while it rewrites a batch's files, one per vendor: a sync
    running meanwhile must not write back rows the purge removed."""
    vendors: set[str] = set()
    with lake.connect(snapshot=lake.snapshot(LABELING_TABLES)) as con:
        for table in LABELING_TABLES:
            found = con.execute(f"SELECT DISTINCT vendor FROM {identifier(table)}")
            vendors |= {r[0] for r in found.fetchall()}
    with contextlib.ExitStack() as stack:
        for vendor in sorted(v for v in vendors if v):
            stack.enter_context(lake.lock(f"labeling-{vendor}"))
        yield


__all__ = ["LINEAGE_TABLES", "PurgeResult", "purge_logs"]
