"""A summary of what the lake holds, for `flywheel status` and the demo.

>>> lake_summary(lake)["tables"]["scenes"]
6
"""

from __future__ import annotations

import json
import os
from typing import Any

from flywheel import console, schemas
from flywheel.lake import Lake, resolve
from flywheel.sql import identifier


def lake_summary(lake: str | os.PathLike | Lake | None = None) -> dict[str, Any]:
    """Row counts per table, the logs, scenes per tag, the quarantine and the index.

    `ignored` lists the lake's folders that are not tables (never read, never SQL).
    """
    target = resolve(lake)
    snapshot = target.snapshot()
    names = sorted(t for t in snapshot.tables if t in schemas.TABLES or snapshot.files[t])

    def read(con) -> dict[str, Any]:
        tables = {
            name: con.execute(f"SELECT count(*) FROM {identifier(name)}").fetchall()[0][0]
            for name in names
        }
        logs = con.execute(
            "SELECT count(*), coalesce(sum(message_count), 0), coalesce(sum(bytes), 0), "
            "coalesce(sum(end_ns - start_ns), 0) / 3.6e12 FROM logs"
        ).fetchall()[0]
        tags = con.execute(
            "SELECT tag, count(*) AS scenes FROM (SELECT unnest(tags) AS tag FROM scenes) "
            "GROUP BY tag ORDER BY scenes DESC, tag"
        ).fetchall()
        quarantine = con.execute(
            'SELECT source_uri, reason FROM quarantine ORDER BY "at"'
        ).fetchall()
        return {"tables": tables, "logs": logs, "tags": tags, "quarantine": quarantine}

    with target.connect(snapshot=snapshot) as con:
        found = read(con)
    logs = found["logs"]
    return {
        "lake": str(target.root),
        "tables": found["tables"],
        "logs": {
            "count": logs[0],
            "messages": int(logs[1]),
            "bytes": int(logs[2]),
            "hours": round(float(logs[3]), 3),
        },
        "tags": dict(found["tags"]),
        "quarantine": [{"source_uri": uri, "reason": why} for uri, why in found["quarantine"]],
        "index": _index(target, found["tables"].get("scenes", 0)),
        "ignored": target.unknown_folders(),
    }


def _index(lake: Lake, scenes: int) -> dict[str, Any] | None:
    """What the similarity index covers, from its manifest (written by mining.index)."""
    try:
        text = lake.read_text("_index/manifest.json")
        manifest = json.loads(text) if text else None
    except (OSError, ValueError):
        return {"error": "the index manifest is unreadable: `flywheel index --full`"}
    if manifest is None:
        return None
    shards = manifest.get("shards") or [manifest]
    blank = sum(s.get("blank", 0) for s in shards)
    return {
        "kind": manifest.get("kind"),
        "scenes": manifest.get("count", 0),
        "shards": len(shards),
        "complete": manifest.get("complete", True),
        "built_at": manifest.get("built_at"),
        "embedding_version": manifest.get("embedding_version"),
        # scenes ingested since the build, searched exactly until the next one
        "not_indexed": max(0, scenes - manifest.get("count", 0) - blank),
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
    index = summary.get("index")
    if index is None:
        console.line("index: none yet (`flywheel index`, or built by the first search)")
    elif "error" in index:
        console.line(f"index: {index['error']}")
    else:
        console.line(
            f"index: {index['kind']} over {index['scenes']:,} scenes in {index['shards']} "
            f"shard(s), built {index['built_at']}"
            + ("" if index["complete"] else " (a build is under way or was interrupted)")
            + (
                f"; {index['not_indexed']:,} scenes since, searched exactly until "
                "the next `flywheel index`"
                if index["not_indexed"]
                else ""
            )
        )
    if summary.get("ignored"):
        console.warn(
            f"ignored {len(summary['ignored'])} folder(s) that are not lake tables: "
            + ", ".join(repr(name) for name in summary["ignored"])
        )
    if summary["quarantine"]:
        console.table(
            [(q["source_uri"], q["reason"]) for q in summary["quarantine"]],
            ["source", "reason"],
            title="quarantine",
        )
