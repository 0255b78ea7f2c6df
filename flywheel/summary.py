"""A summary of what the lake holds, for `flywheel status` and the demo.

>>> lake_summary("/tmp/flywheel-doctest-lake")["tables"]["scenes"]
0
"""

from __future__ import annotations

import os
from typing import Any

from flywheel import console, schemas
from flywheel.lake import Lake, resolve


def lake_summary(lake: str | os.PathLike | Lake | None = None) -> dict[str, Any]:
    """Row counts per table, the logs, scenes per tag, and the quarantine."""
    target = resolve(lake)
    con = target.connect()
    tables = {
        name: con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
        for name in sorted(set(schemas.TABLES) | set(target.tables()))
    }
    logs = con.execute(
        "SELECT count(*), coalesce(sum(message_count), 0), coalesce(sum(bytes), 0), "
        "coalesce(sum(end_ns - start_ns), 0) / 3.6e12 FROM logs"
    ).fetchone()
    tags = con.execute(
        "SELECT tag, count(*) AS scenes FROM (SELECT unnest(tags) AS tag FROM scenes) "
        "GROUP BY tag ORDER BY scenes DESC, tag"
    ).fetchall()
    quarantine = con.execute('SELECT source_uri, reason FROM quarantine ORDER BY "at"').fetchall()
    return {
        "lake": str(target.root),
        "tables": tables,
        "logs": {
            "count": logs[0],
            "messages": int(logs[1]),
            "bytes": int(logs[2]),
            "hours": round(float(logs[3]), 3),
        },
        "tags": dict(tags),
        "quarantine": [{"source_uri": uri, "reason": reason} for uri, reason in quarantine],
    }


def print_lake_summary(summary: dict[str, Any]) -> None:
    logs = summary["logs"]
    console.line(
        f"lake {summary['lake']}: {logs['count']} logs, {logs['messages']:,} messages, "
        f"{logs['bytes'] / 1e6:.1f} MB, {logs['hours']:.2f} h of data"
    )
    console.table(sorted(summary["tables"].items()), ["table", "rows"], title="tables")
    if summary["tags"]:
        console.table(summary["tags"].items(), ["tag", "scenes"], title="scenes by tag")
    if summary["quarantine"]:
        console.table(
            [(q["source_uri"], q["reason"]) for q in summary["quarantine"]],
            ["source", "reason"],
            title="quarantine",
        )
