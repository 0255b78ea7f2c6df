"""The vendor scorecard and the `quality:` alerts: each vendor's and annotator's turnaround
beside the quality of their labels (labeling.quality), and one alert per suspect row."""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb

from metrics.alerts import Alert

TURNAROUND_SQL = """
SELECT t.vendor, l.annotator, count(*) AS tasks,
    quantile_cont(epoch_us(t.completed_at) / 1e6 - epoch_us(t.submitted_at) / 1e6, 0.5)
        AS turnaround_p50_s
FROM tasks t JOIN labels l USING (batch_id, scene_id)
WHERE t.completed_at IS NOT NULL AND t.submitted_at IS NOT NULL
GROUP BY ALL
"""


def scorecard(con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> list[dict]:
    """Per (vendor, annotator): labels, agreement, whether suspect and why, turnaround p50;
    and per vendor (annotator null) the same over all its labels."""
    times = {(v, a): (n, p50) for v, a, n, p50 in con.execute(TURNAROUND_SQL).fetchall()}
    out = []
    for row in rows:
        if row["kind"] != "annotator":
            continue
        _, p50 = times.get((row["vendor"], row["annotator"]), (0, None))
        out.append(
            {
                "vendor": row["vendor"],
                "annotator": row["annotator"],
                "labels": row["labels"],
                "agreement": row["agreement"],
                "suspect": row["suspect"],
                "reason": row["reason"],
                "turnaround_p50_s": p50,
            }
        )
    for vendor in sorted({r["vendor"] for r in out}):
        mine = [r for r in out if r["vendor"] == vendor]
        labels = sum(r["labels"] for r in mine)
        agree = sum(r["agreement"] * r["labels"] for r in mine) / labels if labels else None
        p50 = con.execute(
            "SELECT quantile_cont(epoch_us(completed_at) / 1e6 - epoch_us(submitted_at) / 1e6, "
            "0.5) FROM tasks WHERE vendor = ? AND completed_at IS NOT NULL",
            [vendor],
        ).fetchall()[0][0]
        out.append(
            {
                "vendor": vendor,
                "annotator": None,
                "labels": labels,
                "agreement": agree,
                "suspect": any(r["suspect"] for r in mine),
                "reason": None,
                "turnaround_p50_s": p50,
            }
        )
    return sorted(out, key=lambda r: (r["vendor"], r["annotator"] is None, r["annotator"] or ""))


def alert_id(row: dict[str, Any]) -> str:
    if row["kind"] == "batch":
        return f"quality:batch:{row['batch_id']}"
    return f"quality:{row['vendor']}:{row['annotator']}"


def alerts(rows: list[dict[str, Any]], now: dt.datetime) -> list[Alert]:
    """One alert per suspect quality row."""
    out = []
    for row in rows:
        if not row["suspect"]:
            continue
        ident = alert_id(row)
        who = (
            f"batch {row['batch_id']} ({row['vendor']})"
            if row["kind"] == "batch"
            else f"annotator {row['annotator']} of {row['vendor']}"
        )
        out.append(
            Alert(
                id=ident,
                kind="quality",
                title=f"Labels of {who} look wrong",
                detail=f"{row['reason']}; {row['labels']} labels, "
                f"{row['agreement']:.0%} agree with the evidence",
                since=now.isoformat(timespec="minutes"),
                count=row["labels"],
                section="#quality",
                command=f"flywheel label quality --labels {ident}",
            )
        )
    return out


__all__ = ["alert_id", "alerts", "scorecard"]
