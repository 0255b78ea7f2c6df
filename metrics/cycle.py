"""Stitching: one row per scene with the time it reached each stage of the cycle
(docs/contract.md §2).

Where each time comes from:

- ``collected``: the scene's ``end_ns``.
- ``ingested``: the first ``ingested`` event of the scene's log (else ``logs.ingested_at``).
- ``mined``, ``submitted``, ``labeled``: the scene's first event of that stage.
- ``trained``: the first ``trained`` event of a model whose ``attrs.batches`` holds a batch the
  scene was submitted in (the ``batch_id`` of its ``submitted`` events), or whose
  ``attrs.datasets`` holds a dataset version with the scene.
- ``evaluated``, ``deployed``: the first evaluation and deployment of any model trained on the
  scene. That is the "that model" of docs/contract.md §2 when the first model trained on a scene
  ships; when it does not (a failed evaluation) and a later model with the scene does, the
  scene's data still reached production, and the later model's deployment is the one that counts.

A stage's latency is its time minus the time of the nearest earlier stage the scene reached
(a scene submitted from a list that was never saved as a selection has no ``mined`` time; its
``submitted`` latency counts from ``ingested``). Everything is one DuckDB query over the lake's
views; times are UTC epoch seconds (DOUBLE) so latencies are plain differences.

>>> STAGES[0], STAGES[-1], len(STAGES)
('collected', 'deployed', 8)
"""

from __future__ import annotations

import duckdb

from flywheel.events import STAGES
from flywheel.lake import Lake

__all__ = ["CYCLE_SQL", "STAGES", "connect", "latency_sql", "stitch"]


def _seconds(column: str) -> str:
    return f"epoch_us({column}) / 1e6"


# one row per published scene; each stage's time in epoch seconds, NULL where not reached
CYCLE_SQL = f"""
WITH scene_events AS (
    SELECT entity_id AS scene_id,
           min("at") FILTER (WHERE stage = 'mined') AS mined,
           min("at") FILTER (WHERE stage = 'submitted') AS submitted,
           min("at") FILTER (WHERE stage = 'labeled') AS labeled
    FROM events WHERE stage IN ('mined', 'submitted', 'labeled')
    GROUP BY entity_id
),
log_events AS (
    SELECT entity_id AS log_id, min("at") AS ingested
    FROM events WHERE stage = 'ingested' GROUP BY entity_id
),
scene_batches AS (
    SELECT DISTINCT entity_id AS scene_id, json_extract_string(attrs, '$.batch_id') AS batch_id
    FROM events WHERE stage = 'submitted'
),
model_batches AS (
    SELECT entity_id AS model_id, "at" AS trained,
           unnest(CAST(json_extract_string(attrs, '$.batches[*]') AS VARCHAR[])) AS batch_id
    FROM events WHERE stage = 'trained'
),
model_stages AS (
    SELECT entity_id AS model_id,
           min("at") FILTER (WHERE stage = 'evaluated') AS evaluated,
           min("at") FILTER (WHERE stage = 'deployed') AS deployed
    FROM events WHERE stage IN ('evaluated', 'deployed') GROUP BY entity_id
),
model_datasets AS (
    SELECT entity_id AS model_id, "at" AS trained,
           unnest(CAST(json_extract_string(attrs, '$.datasets[*]') AS VARCHAR[])) AS ref
    FROM events WHERE stage = 'trained'
),
model_scenes AS (
    SELECT mb.model_id, mb.trained, sb.scene_id
    FROM model_batches mb JOIN scene_batches sb USING (batch_id)
    UNION ALL
    SELECT md.model_id, md.trained, d.scene_id
    FROM model_datasets md
    JOIN datasets d ON d.dataset || '@' || CAST(d.version AS VARCHAR) = md.ref
),
scene_models AS (
    SELECT scene_id, min(trained) AS trained, min(evaluated) AS evaluated,
           min(deployed) AS deployed
    FROM model_scenes LEFT JOIN model_stages USING (model_id)
    GROUP BY scene_id
)
SELECT s.scene_id, s.log_id,
       s.end_ns / 1e9 AS collected,
       {_seconds("coalesce(le.ingested, l.ingested_at)")} AS ingested,
       {_seconds("se.mined")} AS mined,
       {_seconds("se.submitted")} AS submitted,
       {_seconds("se.labeled")} AS labeled,
       {_seconds("sm.trained")} AS trained,
       {_seconds("sm.evaluated")} AS evaluated,
       {_seconds("sm.deployed")} AS deployed
FROM scenes s
JOIN logs l USING (log_id)
LEFT JOIN log_events le USING (log_id)
LEFT JOIN scene_events se USING (scene_id)
LEFT JOIN scene_models sm USING (scene_id)
"""


def latency_sql(stage: str) -> str:
    """SQL for `stage`'s latency in seconds: its time minus the nearest earlier stage reached.

    >>> latency_sql("mined")
    '(mined - coalesce(ingested, collected))'
    """
    earlier = list(STAGES[: STAGES.index(stage)])
    if not earlier:
        return "NULL"
    previous = earlier[-1] if len(earlier) == 1 else f"coalesce({', '.join(reversed(earlier))})"
    return f"({stage} - {previous})"


def stitch(con: duckdb.DuckDBPyConnection, table: str = "cycle") -> int:
    """Materialise the per-scene stage times as temp table `table` on `con`; its row count.

    `con` is a connection from ``Lake.connect()`` (it has the lake's views). The table adds
    ``last_stage`` (the furthest stage reached) and ``<stage>_s`` latency columns.
    """
    latencies = ", ".join(f"{latency_sql(s)} AS {s}_s" for s in STAGES[1:])
    last = " ".join(f"WHEN {s} IS NOT NULL THEN '{s}'" for s in reversed(STAGES))
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table} AS "
        f"SELECT *, CASE {last} END AS last_stage, {latencies} FROM ({CYCLE_SQL})"
    )
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def connect(lake: Lake) -> duckdb.DuckDBPyConnection:
    """The lake's views, the stitched `cycle` table, and `batch_sla`: the SLA each labeling
    batch was planned with (an empty view on a lake that never labeled, so every query that
    joins it works on any lake)."""
    con = lake.connect()
    stitch(con)
    labeled = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'batches'"
    ).fetchone()[0]
    source = (
        "SELECT batch_id, max(sla_s) AS sla_s FROM batches GROUP BY batch_id"
        if labeled
        else "SELECT NULL::VARCHAR AS batch_id, NULL::DOUBLE AS sla_s WHERE false"
    )
    con.execute(f"CREATE OR REPLACE TEMP VIEW batch_sla AS {source}")
    return con
