"""Alerts worth acting on, one per condition (never one per scene).

Three conditions, each with a stable id so the same condition is the same alert on every run:

- ``sla:<vendor>``: a vendor has tasks open past its SLA (the SLA the vendor had when their
  batch was planned, ``batches.sla_s``); one alert per vendor naming the late batches, since
  one slow vendor is one thing to chase. Late but finished tasks are history, shown in the
  report, not alerted.
- ``slow:<stage>``: the stage's p50 latency over the last 7 days is above ``slow_factor`` x
  its p50 over the ``baseline_weeks`` before, by at least ``slow_min_hours``, with at least
  ``slow_min_scenes`` scenes on both sides, and at least a quarter of this week's scenes
  slower than the baseline's p90 (2.5x the tenth expected): a whole distribution that moved,
  not one slow model run dragging its scenes. A wiggle, a thin week or a stage that was always
  slow raises nothing; a stage that got slower does.
- ``stuck:<stage>``: scenes waiting at a stage (it is their furthest) longer than its
  ``stuck_<stage>_days`` threshold: labeled but never trained, trained but never evaluated…
- ``license:<source>`` (``metrics.licenses``): a license that ends soon, or has ended under a
  deployed model.

Every alert names what, how much, since when, the report section that shows it, and the
command that lists the affected entities (``flywheel report --alert ID``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import duckdb
import pandas as pd

from flywheel.config import MetricsConfig
from flywheel.errors import InputError
from flywheel.lineage import EDGES_SQL
from metrics._units import duration as _duration
from metrics._units import iso as _iso
from metrics.cycle import STAGES

WEEK_S = 7 * 86400.0
STUCK_STAGES = ("mined", "labeled", "trained", "evaluated")
SLOW_SHARE_ABOVE_P90 = 0.25  # of this week's scenes, above the baseline's p90 (0.1 expected)


@dataclass(frozen=True)
class Alert:
    id: str  # the condition: the same condition keeps the same id
    kind: str  # sla_breach | slow_stage | stuck
    title: str  # what
    detail: str  # how much
    since: str  # since when (ISO 8601, UTC)
    count: int  # entities affected
    section: str  # the report's anchor that shows it
    command: str  # lists the affected entities

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate(
    con: duckdb.DuckDBPyConnection, now: dt.datetime, config: MetricsConfig
) -> list[Alert]:
    """The alerts for the lake behind `con` (from `metrics.cycle.connect`)."""
    t = now.timestamp()
    return [*_sla(con, t), *_slow(con, t, config), *_stuck(con, t, config)]


def entities(
    con: duckdb.DuckDBPyConnection, alert_id: str, now: dt.datetime, config: MetricsConfig
) -> pd.DataFrame:
    """The entities behind alert `alert_id` (scenes or tasks), worst first."""
    kind, _, key = alert_id.partition(":")
    t = now.timestamp()
    if kind == "sla" and key:
        return con.execute(
            f"""
            SELECT t.batch_id, t.scene_id, t.vendor, t.external_id, t.status, t.submitted_at,
                   round(($now - epoch_us(t.submitted_at) / 1e6) / 3600, 1) AS open_h,
                   round(b.sla_s / 3600, 1) AS sla_h
            FROM ({_OPEN_TASKS}) t JOIN batch_sla b USING (batch_id)
            WHERE t.vendor = $key AND $now - epoch_us(t.submitted_at) / 1e6 > b.sla_s
            ORDER BY t.submitted_at, t.batch_id, t.scene_id
            """,
            {"now": t, "key": key},
        ).df()
    if kind == "slow" and key in STAGES[1:]:
        return con.execute(
            f"""
            SELECT scene_id, log_id, to_timestamp({key}) AS reached_at,
                   round({key}_s / 3600, 2) AS latency_h
            FROM cycle WHERE {key} >= $start ORDER BY {key}_s DESC, scene_id
            """,
            {"start": t - WEEK_S},
        ).df()
    if kind == "stuck" and key in STUCK_STAGES:
        return con.execute(
            f"""
            SELECT scene_id, log_id, to_timestamp({key}) AS reached_at,
                   round(($now - {key}) / 86400, 1) AS waiting_days
            FROM cycle WHERE last_stage = $stage AND $now - {key} > $limit
            ORDER BY {key}, scene_id
            """,
            {"now": t, "stage": key, "limit": _stuck_days(config, key) * 86400},
        ).df()
    if kind == "license" and key:
        return con.execute(
            f"""
            WITH edges AS ({EDGES_SQL})
            SELECT e.model, coalesce(m.deployed, false) AS deployed, m.deployed_at,
                count(DISTINCT e.scene_id) AS scenes, count(DISTINCT e.log_id) AS logs,
                list_sort(list(DISTINCT e.dataset) FILTER (e.dataset IS NOT NULL)) AS datasets
            FROM edges e LEFT JOIN models m USING (model)
            WHERE e.source = $key GROUP BY ALL ORDER BY deployed DESC, e.model
            """,
            {"key": key},
        ).df()
    raise InputError(
        f"no alert {alert_id!r}: ids look like sla:VENDOR, slow:STAGE, stuck:STAGE or "
        "license:SOURCE "
        "(`flywheel report` lists the current ones)"
    )


_OPEN_TASKS = "SELECT * FROM tasks WHERE completed_at IS NULL AND submitted_at IS NOT NULL"


def _sla(con: duckdb.DuckDBPyConnection, t: float) -> list[Alert]:
    rows = con.execute(
        f"""
        WITH late AS (
            SELECT o.vendor, o.batch_id, count(*) AS n,
                   min(epoch_us(o.submitted_at) / 1e6) AS oldest, any_value(b.sla_s) AS sla_s
            FROM ({_OPEN_TASKS}) o JOIN batch_sla b USING (batch_id)
            WHERE $now - epoch_us(o.submitted_at) / 1e6 > b.sla_s
            GROUP BY o.vendor, o.batch_id
        )
        SELECT vendor, sum(n)::BIGINT, min(oldest), min(oldest + sla_s), max(sla_s),
               list(batch_id ORDER BY oldest, batch_id)
        FROM late GROUP BY vendor ORDER BY min(oldest), vendor
        """,
        {"now": t},
    ).fetchall()
    alerts = []
    for vendor, n, oldest, since, sla, batches in rows:
        shown = ", ".join(batches[:3]) + (
            f" and {len(batches) - 3} more" if len(batches) > 3 else ""
        )
        alerts.append(
            Alert(
                id=f"sla:{vendor}",
                kind="sla_breach",
                title=f"{vendor} is past its SLA",
                detail=(
                    f"{n} tasks in {len(batches)} batch{'es' if len(batches) > 1 else ''} "
                    f"({shown}) open past the {_duration(sla)} SLA; the oldest has waited "
                    f"{_duration(t - oldest)}"
                ),
                since=_iso(since),
                count=int(n),
                section="#vendors",
                command=f"flywheel report --alert sla:{vendor}",
            )
        )
    return alerts


def _slow(con: duckdb.DuckDBPyConnection, t: float, config: MetricsConfig) -> list[Alert]:
    start, base_start = t - WEEK_S, t - WEEK_S * (1 + config.baseline_weeks)
    alerts = []
    for stage in STAGES[1:]:
        lat = f"{stage}_s"
        row = con.execute(
            f"""
            SELECT count(*) FILTER (WHERE {stage} >= $start) AS n_now,
                   median({lat}) FILTER (WHERE {stage} >= $start) AS p50_now,
                   count(*) FILTER (WHERE {stage} >= $base AND {stage} < $start) AS n_base,
                   median({lat}) FILTER (WHERE {stage} >= $base AND {stage} < $start) AS p50_base,
                   quantile_cont({lat}, 0.9) FILTER (WHERE {stage} >= $base AND {stage} < $start)
                       AS p90_base
            FROM cycle WHERE {stage} >= $base AND {stage} <= $now AND {lat} IS NOT NULL
            """,
            {"start": start, "base": base_start, "now": t},
        ).fetchone()
        n_now, p50_now, n_base, p50_base, p90_base = row
        if min(n_now, n_base) < config.slow_min_scenes or p50_base is None:
            continue
        if p50_now <= config.slow_factor * p50_base:
            continue
        if p50_now - p50_base < config.slow_min_hours * 3600:
            continue
        above, first = con.execute(
            f"SELECT count(*) FILTER (WHERE {lat} > $p90), "
            # since: the first scene this week above the threshold
            f"min({stage}) FILTER (WHERE {lat} > $limit) "
            f"FROM cycle WHERE {stage} >= $start AND {stage} <= $now AND {lat} IS NOT NULL",
            {"start": start, "now": t, "p90": p90_base, "limit": config.slow_factor * p50_base},
        ).fetchone()
        if above < SLOW_SHARE_ABOVE_P90 * n_now:
            continue
        alerts.append(
            Alert(
                id=f"slow:{stage}",
                kind="slow_stage",
                title=f"{stage} got slower",
                detail=(
                    f"p50 latency {_duration(p50_now)} over the last 7 days ({n_now} scenes) vs "
                    f"{_duration(p50_base)} over the {config.baseline_weeks} weeks before "
                    f"({p50_now / p50_base:.1f}x)"
                ),
                since=_iso(first if first is not None else start),
                count=int(n_now),
                section=f"#stage-{stage}",
                command=f"flywheel report --alert slow:{stage}",
            )
        )
    return alerts


def _stuck(con: duckdb.DuckDBPyConnection, t: float, config: MetricsConfig) -> list[Alert]:
    alerts = []
    for stage in STUCK_STAGES:
        days = _stuck_days(config, stage)
        if days <= 0:
            continue
        n, oldest = con.execute(
            f"SELECT count(*), min({stage}) FROM cycle "
            f"WHERE last_stage = $stage AND $now - {stage} > $limit",
            {"stage": stage, "now": t, "limit": days * 86400},
        ).fetchone()
        if not n:
            continue
        following = STAGES[STAGES.index(stage) + 1]
        alerts.append(
            Alert(
                id=f"stuck:{stage}",
                kind="stuck",
                title=f"scenes stuck at {stage}",
                detail=(
                    f"{n} scenes {stage} more than {days:g} days ago and not yet {following}; "
                    f"the oldest has waited {_duration(t - oldest)}"
                ),
                since=_iso(oldest + days * 86400),
                count=int(n),
                section="#wip",
                command=f"flywheel report --alert stuck:{stage}",
            )
        )
    return alerts


def _stuck_days(config: MetricsConfig, stage: str) -> float:
    return float(getattr(config, f"stuck_{stage}_days"))
