"""The cycle-time report: every number of the dashboard, the terminal summary and the JSON.

``build(lake)`` stitches the cycle (``metrics.cycle``) and aggregates it in DuckDB:

- ``stages``: per stage, scenes that reached it and latency percentiles (p50/p90/p99, linear
  interpolation between order statistics, like ``numpy.percentile``) plus a log-binned
  histogram for the chart;
- ``cycle``: ``deployed - collected`` percentiles, and ``cycle_weekly``, its trend by week;
- ``wip``: scenes whose furthest stage is not ``deployed``, per stage, with their age;
- ``throughput``: scenes reaching each stage per week;
- ``bottleneck``: the stage with the largest share of the median cycle (medians over the
  scenes that completed the cycle; over every scene that reached the stage while none has);
- ``vendors``: labeling turnaround (``completed_at - submitted_at``, the vendor's clock) per
  vendor against its SLA; ``lineage``: which dataset versions and batches fed which model;
- ``licenses``: each source's terms and the logs, scenes and models that depend on it;
- ``alerts`` (``metrics.alerts``): the active ones; ``acknowledged``: those a person
  acknowledged whose entities have not changed since (``metrics.acks``), with who and when.

`since` keeps stage transitions, completed cycles and throughput at or after that time; work
in progress and alerts are always as of `now`. Weeks start on Monday, 00:00 UTC.

>>> build(lake).scenes
6
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb

from flywheel.config import MetricsConfig, load_config
from flywheel.display import html_table
from flywheel.events import now as utc_now
from flywheel.lake import Lake, resolve
from flywheel.lineage import EDGES_SQL
from ingest.triggers import CURRENT_HITS
from labeling.quality import quality as label_quality
from metrics import acks
from metrics import alerts as alerting
from metrics import licenses as licensing
from metrics import scorecard as scorecards
from metrics._units import duration, iso
from metrics.cycle import STAGES, connect

WEEK_S = 7 * 86400
MONDAY_S = 4 * 86400  # 1970-01-05 was the first Monday after the epoch
WEEKS_SHOWN = 26
HIST_BINS_PER_DECADE = 4  # latency histogram bins: 10^(i/4) s


@dataclass
class Report:
    generated_at: str
    since: str | None
    scenes: int
    stages: list[dict[str, Any]]
    cycle: dict[str, Any]
    cycle_weekly: list[dict[str, Any]]
    wip: dict[str, int]
    wip_detail: list[dict[str, Any]]
    throughput: list[dict[str, Any]]
    bottleneck: str | None
    bottleneck_sentence: str
    bottleneck_shares: dict[str, float]
    vendors: list[dict[str, Any]]
    lineage: list[dict[str, Any]]
    alerts: list[dict[str, Any]] = field(default_factory=list)
    histograms: dict[str, list[list[float]]] = field(default_factory=dict)
    # hits per trigger per week of driving, and per hour driven that week
    triggers: list[dict[str, Any]] = field(default_factory=list)
    # each source's terms and what depends on it (metrics.licenses)
    licenses: list[dict[str, Any]] = field(default_factory=list)
    # label quality per vendor and annotator beside their turnaround (metrics.scorecard)
    scorecard: list[dict[str, Any]] = field(default_factory=list)
    # alerts a person acknowledged, left out of `alerts` until their entities change
    acknowledged: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _rows(self) -> list[tuple[str, object]]:
        p50 = self.cycle.get("p50_s")
        return [
            ("generated at", self.generated_at),
            ("scenes", self.scenes),
            ("cycles completed", self.cycle.get("count", 0)),
            ("cycle p50", "-" if p50 is None else f"{p50 / 86400:.1f} days"),
            ("bottleneck", self.bottleneck or "-"),
            ("work in progress", ", ".join(f"{k} {v}" for k, v in self.wip.items())),
            ("alerts", len(self.alerts)),
        ]

    def __str__(self) -> str:
        rows = dict(self._rows())
        return (
            f"report at {self.generated_at}: {self.scenes} scenes, "
            f"{rows['cycles completed']} cycles completed (p50 {rows['cycle p50']})\n"
            f"bottleneck: {self.bottleneck_sentence or rows['bottleneck']}\n"
            f"work in progress: {rows['work in progress'] or 'none'}; {len(self.alerts)} alerts"
        )

    def _repr_html_(self) -> str:
        return html_table("report", self._rows())


def build(
    lake: str | Lake | None = None,
    since: dt.datetime | None = None,
    now: dt.datetime | None = None,
    config: MetricsConfig | None = None,
) -> Report:
    """Compute the report for `lake` as of `now` (default: the current time)."""
    lake = resolve(lake)
    now = now or utc_now()
    config = config or load_config().metrics
    con = connect(lake)
    t_now, t_since = now.timestamp(), since.timestamp() if since else None
    stages = _stages(con, t_since)
    cycle, weekly = _cycle(con, t_since)
    wip, wip_detail = _wip(con, t_now)
    bottleneck, sentence, shares = _bottleneck(con, t_since)
    terms = licensing.licenses(con, now.date())
    checked = label_quality(lake)
    active, acknowledged = acks.split(
        lake,
        con,
        [
            a.as_dict()
            for a in [
                *alerting.evaluate(con, now, config),
                *licensing.alerts(terms, config),
                *scorecards.alerts(checked, now),
            ]
        ],
        now,
        config,
    )
    return Report(
        generated_at=iso(t_now),
        since=iso(t_since) if t_since is not None else None,
        scenes=con.execute("SELECT count(*) FROM cycle").fetchone()[0],
        stages=stages,
        cycle=cycle,
        cycle_weekly=weekly,
        wip=wip,
        wip_detail=wip_detail,
        throughput=_throughput(con, t_since, t_now),
        bottleneck=bottleneck,
        bottleneck_sentence=sentence,
        bottleneck_shares=shares,
        vendors=_vendors(con, t_since, t_now),
        lineage=_lineage(con),
        alerts=active,
        acknowledged=acknowledged,
        histograms=_histograms(con, t_since),
        triggers=_triggers(con, t_since, t_now),
        licenses=terms,
        scorecard=scorecards.scorecard(con, checked),
    )


def _after(column: str, since: float | None) -> str:
    return "true" if since is None else f"{column} >= {since!r}"


def _stages(con: duckdb.DuckDBPyConnection, since: float | None) -> list[dict[str, Any]]:
    parts = [
        f"count({s}) FILTER (WHERE {_after(s, since)}), "
        f"quantile_cont({s}_s, [0.5, 0.9, 0.99]) FILTER (WHERE {_after(s, since)})"
        if s != "collected"
        else f"count({s}) FILTER (WHERE {_after(s, since)}), NULL"
        for s in STAGES
    ]
    row = con.execute(f"SELECT {', '.join(parts)} FROM cycle").fetchone()
    out = []
    for i, stage in enumerate(STAGES):
        count, q = row[2 * i], row[2 * i + 1]
        p50, p90, p99 = q if q else (None, None, None)
        out.append({"stage": stage, "count": count, "p50_s": p50, "p90_s": p90, "p99_s": p99})
    return out


def _cycle(
    con: duckdb.DuckDBPyConnection, since: float | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    where = f"deployed IS NOT NULL AND {_after('deployed', since)}"
    count, q, mean = con.execute(
        "SELECT count(*), quantile_cont(deployed - collected, [0.5, 0.9, 0.99]), "
        f"avg(deployed - collected) FROM cycle WHERE {where}"
    ).fetchone()
    p50, p90, p99 = q if q else (None, None, None)
    weekly = con.execute(
        f"""
        SELECT {_week("deployed")} AS week, count(*) AS count,
               quantile_cont(deployed - collected, 0.5) AS p50_s,
               quantile_cont(deployed - collected, 0.9) AS p90_s
        FROM cycle WHERE {where} GROUP BY week ORDER BY week DESC LIMIT {WEEKS_SHOWN}
        """
    ).fetchall()
    # every week from the first to the last, a week without a deployment included
    found = {int(w): (n, a, b) for w, n, a, b in weekly}
    trend = []
    if found:
        for w in range(min(found), max(found) + 1, WEEK_S):
            n, a, b = found.get(w, (0, None, None))
            trend.append({"week": iso(w)[:10], "count": n, "p50_s": a, "p90_s": b})
    return {"count": count, "p50_s": p50, "p90_s": p90, "p99_s": p99, "mean_s": mean}, trend


def _week(column: str) -> str:
    # Monday-based weeks in UTC, by arithmetic: no time-zone database involved
    return f"(floor(({column} - {MONDAY_S}) / {WEEK_S}) * {WEEK_S} + {MONDAY_S})"


def _wip(con: duckdb.DuckDBPyConnection, now: float) -> tuple[dict[str, int], list[dict[str, Any]]]:
    waiting = [s for s in STAGES if s != "deployed"]
    cases = " ".join(f"WHEN '{s}' THEN {s}" for s in waiting)
    rows = con.execute(
        f"""
        SELECT last_stage, count(*),
               quantile_cont($now - CASE last_stage {cases} END, 0.5),
               max($now - CASE last_stage {cases} END)
        FROM cycle WHERE last_stage <> 'deployed' GROUP BY last_stage
        """,
        {"now": now},
    ).fetchall()
    found = {stage: (n, p50, oldest) for stage, n, p50, oldest in rows}
    wip = {s: int(found.get(s, (0,))[0]) for s in waiting}
    detail = [
        {
            "stage": s,
            "count": wip[s],
            "age_p50_s": found.get(s, (0, None, None))[1],
            "age_max_s": found.get(s, (0, None, None))[2],
            "waiting_for": STAGES[STAGES.index(s) + 1],
        }
        for s in waiting
    ]
    return wip, detail


def _triggers(
    con: duckdb.DuckDBPyConnection, since: float | None, now: float
) -> list[dict[str, Any]]:
    """Hits of each trigger's current version per week the logs were driven, with the hours
    driven that week: a rate that rises after a deployment is news, a count alone is not."""
    first_week = now - WEEK_S * WEEKS_SHOWN
    start = max(first_week, since) if since is not None else first_week
    rows = con.execute(
        f"""
        WITH hits AS (
            SELECT "trigger", {_week("start_ns / 1e9")} AS week, count(*) AS n
            FROM ({CURRENT_HITS}) WHERE start_ns / 1e9 >= $start GROUP BY ALL
        ), driven AS (
            SELECT {_week("start_ns / 1e9")} AS week, sum(end_ns - start_ns) / 3.6e12 AS hours
            FROM logs GROUP BY ALL
        )
        SELECT h."trigger", h.week, h.n, d.hours FROM hits h LEFT JOIN driven d USING (week)
        ORDER BY h."trigger", h.week
        """,
        {"start": start},
    ).fetchall()
    return [
        {
            "trigger": name,
            "week": iso(week)[:10],
            "hits": int(n),
            "hours": hours,
            "per_hour": n / hours if hours else None,
        }
        for name, week, n, hours in rows
    ]


def _throughput(
    con: duckdb.DuckDBPyConnection, since: float | None, now: float
) -> list[dict[str, Any]]:
    first_week = now - WEEK_S * WEEKS_SHOWN
    start = max(first_week, since) if since is not None else first_week
    union = " UNION ALL ".join(
        f"SELECT '{s}' AS stage, {_week(s)} AS week FROM cycle WHERE {s} >= {start!r}"
        for s in STAGES
    )
    rows = con.execute(
        f"SELECT week, stage, count(*) FROM ({union}) GROUP BY week, stage ORDER BY week"
    ).fetchall()
    order = {s: i for i, s in enumerate(STAGES)}
    rows.sort(key=lambda r: (r[0], order[r[1]]))
    return [{"week": iso(w)[:10], "stage": s, "count": n} for w, s, n in rows]


def _bottleneck(
    con: duckdb.DuckDBPyConnection, since: float | None
) -> tuple[str | None, str, dict[str, float]]:
    stages = STAGES[1:]
    medians = ", ".join(f"median({s}_s)" for s in stages)
    done = f"deployed IS NOT NULL AND {_after('deployed', since)}"
    row = con.execute(
        f"SELECT count(*), median(deployed - collected), {medians} FROM cycle WHERE {done}"
    ).fetchone()
    completed, cycle_p50, values = row[0], row[1], row[2:]
    if completed:
        basis = f"of the median cycle of {duration(cycle_p50)} ({completed} scenes deployed)"
        total = cycle_p50
    else:
        # nothing deployed yet: each stage's median over the scenes that reached it
        values = con.execute(
            "SELECT "
            + ", ".join(f"median({s}_s) FILTER (WHERE {_after(s, since)})" for s in stages)
            + " FROM cycle"
        ).fetchone()
        total = sum(v for v in values if v is not None and v > 0)
        basis = "of the stage medians so far (no scene has completed the cycle yet)"
    known = {s: v for s, v in zip(stages, values, strict=True) if v is not None}
    if not known or not total or total <= 0:
        return None, "Not enough data yet to name a bottleneck.", {}
    shares = {s: max(v, 0.0) / total for s, v in known.items()}
    worst = max(shares, key=shares.get)
    sentence = (
        f"The bottleneck is {worst}: its median latency of {duration(known[worst])} "
        f"is {shares[worst]:.0%} {basis}."
    )
    return worst, sentence, shares


def _vendors(
    con: duckdb.DuckDBPyConnection, since: float | None, now: float
) -> list[dict[str, Any]]:
    rows = con.execute(
        f"""
        WITH t AS (
            SELECT vendor, batch_id, epoch_us(submitted_at) / 1e6 AS sub,
                   epoch_us(completed_at) / 1e6 AS done
            FROM tasks WHERE submitted_at IS NOT NULL AND {
            _after("epoch_us(submitted_at) / 1e6", since)
        }
        )
        SELECT vendor, count(*) AS tasks, count(done) AS labeled, count(DISTINCT batch_id),
               quantile_cont(done - sub, [0.5, 0.9, 0.99]) AS q,
               max(sla_s) AS sla_s,
               count(*) FILTER (WHERE done - sub <= sla_s) AS within,
               count(*) FILTER (WHERE done - sub > sla_s) AS late,
               count(*) FILTER (WHERE done IS NULL AND $now - sub > sla_s) AS open_late
        FROM t LEFT JOIN batch_sla b USING (batch_id)
        GROUP BY vendor ORDER BY vendor
        """,
        {"now": now},
    ).fetchall()
    out = []
    for vendor, tasks, labeled, batches, q, sla_s, within, late, open_late in rows:
        p50, p90, p99 = q if q else (None, None, None)
        out.append(
            {
                "vendor": vendor,
                "batches": batches,
                "tasks": tasks,
                "labeled": labeled,
                "turnaround_p50_s": p50,
                "turnaround_p90_s": p90,
                "turnaround_p99_s": p99,
                "sla_s": sla_s,
                "within_sla": (within / (within + late)) if within + late else None,
                "open_past_sla": open_late,
            }
        )
    return out


def _lineage(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    rows = con.execute(
        f"""
        WITH edges AS ({EDGES_SQL}),
        used AS (
            SELECT model, list_sort(list(DISTINCT batch_id) FILTER (batch_id IS NOT NULL)) AS b,
                list_sort(list(DISTINCT coalesce(source, 'unassigned'))) AS src,
                count(DISTINCT scene_id) AS scenes
            FROM edges GROUP BY model
        )
        SELECT m.model, epoch_us(m.trained_at) / 1e6, epoch_us(m.evaluated_at) / 1e6,
            epoch_us(m.deployed_at) / 1e6, m.datasets, u.b, u.src, coalesce(u.scenes, 0)
        FROM models m LEFT JOIN used u USING (model)
        ORDER BY m.trained_at NULLS LAST, m.model
        """
    ).fetchall()
    return [
        {
            "model_id": model,
            "trained_at": iso(trained),
            "evaluated_at": iso(evaluated),
            "deployed_at": iso(deployed),
            "datasets": list(datasets or []),
            "batches": list(batches or []),
            "sources": list(used_sources or []),
            "scenes": int(scenes),
        }
        for model, trained, evaluated, deployed, datasets, batches, used_sources, scenes in rows
    ]


def _histograms(con: duckdb.DuckDBPyConnection, since: float | None) -> dict[str, list]:
    """Per stage: [[bin lower edge s, count], …] on log-spaced bins (non-positive in bin 0)."""
    union = " UNION ALL ".join(
        f"SELECT '{s}' AS stage, "
        f"floor(log10(greatest({s}_s, 1)) * {HIST_BINS_PER_DECADE}) AS bin "
        f"FROM cycle WHERE {s}_s IS NOT NULL AND {_after(s, since)}"
        for s in STAGES[1:]
    )
    rows = con.execute(
        f"SELECT stage, bin, count(*) FROM ({union}) GROUP BY ALL ORDER BY stage, bin"
    ).fetchall()
    out: dict[str, list] = {s: [] for s in STAGES[1:]}
    for stage, b, n in rows:
        out[stage].append([10 ** (b / HIST_BINS_PER_DECADE), n])
    return out


def contract_json(report: Report) -> dict[str, Any]:
    """The JSON form (docs/contract.md §4): the contract's keys first, then everything else."""
    data = report.as_dict()
    head = {
        "stages": data.pop("stages"),
        "cycle": data.pop("cycle"),
        "wip": data.pop("wip"),
        "bottleneck": data.pop("bottleneck"),
        "alerts": data.pop("alerts"),
        "acknowledged": data.pop("acknowledged"),
    }
    data.pop("histograms")
    return head | data
