"""`flywheel demo`: the loop on generated data, from drive logs to a summary of the lake.

Later stages extend it (index, mine, label, track, report); each step calls the same API a
user would.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from flywheel import console
from flywheel.lake import Lake, resolve


def run_demo(
    lake: str | os.PathLike | Lake | None = None,
    logs: int = 4,
    seconds: float = 120.0,
    seed: int = 0,
    workers: int = 2,
) -> dict:
    """Generate logs into `<lake>/_demo/logs`, ingest them, print what the lake now holds."""
    from flywheel.cli import print_ingest_summary
    from flywheel.summary import lake_summary, print_lake_summary
    from ingest import generate, ingest

    target = resolve(lake)
    source = target.root / "_demo" / "logs"
    console.line(f"[bold]1. generate[/bold] {logs} drive logs of {seconds:.0f} s (seed {seed})")
    generate(source, logs=logs, seconds=seconds, seed=seed, camera=True)
    truth = json.loads((source / "truth.json").read_text())

    console.line(f"[bold]2. ingest[/bold] into {target.root} on {workers} Dask workers")
    with console.progress(logs, "ingest") as advance:
        summary = ingest(
            [source],
            target,
            workers=workers,
            on_result=lambda r: advance(1, f"{r.status} {Path(r.source_uri).name}"),
        )
    print_ingest_summary(summary)

    console.line("[bold]3. the lake[/bold]")
    state = lake_summary(target)
    print_lake_summary(state)
    found = planted_events_found(target, truth)
    console.table(
        [(kind, n, hit, f"{hit / n:.0%}") for kind, (n, hit) in sorted(found.items())],
        ["planted event", "planted", "found by tag", "recall"],
        title="generator truth vs scene tags",
    )
    return {"ingest": summary.as_dict(), "lake": state, "truth": found}


# the scene tag that should mark each kind of planted event
TAG_OF_EVENT = {
    "hard_brake": "hard_brake",
    "pedestrian_crossing": "pedestrian_in_path",
    "cut_in": "cut_in",
    "animal": "animal",
    "unknown_object": "unknown_object",
}


def planted_events_found(lake: Lake, truth: dict) -> dict[str, tuple[int, int]]:
    """Per event kind: (planted, how many overlap a scene carrying the matching tag)."""
    import pyarrow as pa

    con = lake.connect()
    rows = [e | {"tag": TAG_OF_EVENT.get(e["kind"], e["kind"])} for e in truth["events"]]
    if not rows:
        return {}
    con.register("planted", pa.Table.from_pylist(rows))
    found = con.execute(
        """
        SELECT p.kind, count(*) AS planted,
               count(*) FILTER (WHERE EXISTS (
                   SELECT 1 FROM scenes s JOIN logs l USING (log_id)
                   WHERE l.source_uri LIKE '%/' || p.log AND s.start_ns < p.end_ns
                     AND s.end_ns > p.start_ns AND list_contains(s.tags, p.tag))) AS found
        FROM planted p GROUP BY p.kind
        """
    ).fetchall()
    return {kind: (planted, hit) for kind, planted, hit in found}
