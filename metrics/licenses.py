"""Licenses: each source's terms, what depends on it, and the alerts worth acting on
(docs/contract.md §7).

One row per source: its license, end date, days left, status, and how many logs and scenes of
the lake and which models (trained on its data, by flywheel.lineage) depend on it.

One alert per source, id ``license:<source>``, when its license

- ends within ``[metrics] license_warning_days`` (default 30) and the lake holds its data or a
  model used it: there is still time to renew or to retrain without it; or
- has ended (or the source was revoked) while a deployed model depends on it: that model ships
  data it may no longer use.

An ended source nobody deploys raises nothing: datasets already refuse it (labeling.datasets).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb

from flywheel.config import MetricsConfig
from flywheel.lineage import EDGES_SQL
from flywheel.sources import status_sql
from metrics.alerts import Alert

SQL = f"""
WITH edges AS ({EDGES_SQL}),
used AS (
    SELECT DISTINCT e.source, e.model, coalesce(m.deployed, false) AS deployed
    FROM edges e LEFT JOIN models m USING (model)
),
held AS (
    SELECT l.source, count(DISTINCT l.log_id) AS logs, count(s.scene_id) AS scenes
    FROM logs l LEFT JOIN scenes s USING (log_id) GROUP BY l.source
)
SELECT s.name AS source, s.license, s.until, s.uses, s.owner, s.revoked_at, s.purged_at,
    {status_sql("$today")} AS status,
    CAST(s.until - $today AS BIGINT) AS days_left,
    coalesce(any_value(h.logs), 0) AS logs, coalesce(any_value(h.scenes), 0) AS scenes,
    coalesce(list_sort(list(DISTINCT u.model) FILTER (u.model IS NOT NULL)), []) AS models,
    coalesce(list_sort(list(DISTINCT u.model) FILTER (u.deployed)), []) AS deployed
FROM sources s LEFT JOIN used u ON u.source = s.name LEFT JOIN held h ON h.source = s.name
GROUP BY ALL ORDER BY s.until NULLS LAST, s.name
"""


def licenses(con: duckdb.DuckDBPyConnection, today: dt.date) -> list[dict[str, Any]]:
    """One dict per source (see the module docstring), soonest end first."""
    cursor = con.execute(SQL, {"today": today})
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    for row in rows:
        row["until"] = row["until"].isoformat() if row["until"] else None
        for key in ("revoked_at", "purged_at"):
            row[key] = row[key].isoformat() if row[key] else None
        row["models"], row["deployed"] = list(row["models"]), list(row["deployed"])
        row["uses"] = list(row["uses"] or [])
    return rows


def alerts(rows: list[dict[str, Any]], config: MetricsConfig) -> list[Alert]:
    """The `license:` alerts of `licenses` rows."""
    out = []
    for row in rows:
        days, deployed = row["days_left"], row["deployed"]
        over = row["status"] != "active"
        soon = not over and days is not None and days <= config.license_warning_days
        if not ((soon and (row["logs"] or row["models"])) or (over and deployed)):
            continue
        when = (
            f"revoked on {row['revoked_at'][:10]}"
            if row["status"] == "revoked"
            else (f"ended on {row['until']}" if over else f"ends on {row['until']}")
        )
        models = ", ".join(m + (" (deployed)" if m in deployed else "") for m in row["models"])
        left = f"{days} day{'s' * (days != 1)} left" if soon else "no longer usable"
        detail = f"{left}; {row['logs']} logs, {row['scenes']} scenes in the lake; " + (
            f"models trained on it: {models}" if models else "no model trained on it yet"
        )
        out.append(
            Alert(
                id=f"license:{row['source']}",
                kind="license",
                title=f"License of source {row['source']} {when}",
                detail=detail,
                since=(row["revoked_at"] if row["status"] == "revoked" else row["until"]) or "",
                count=len(row["models"]),
                section=f"#license-{row['source']}",
                command=f"flywheel lineage source {row['source']}",
            )
        )
    return out


__all__ = ["SQL", "alerts", "licenses"]
