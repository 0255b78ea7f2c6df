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
    planted: dict[str, int] = {}
    for event in truth["events"]:
        planted[event["kind"]] = planted.get(event["kind"], 0) + 1
    console.table(sorted(planted.items()), ["planted event", "count"], title="generator truth")
    return {"ingest": summary.as_dict(), "lake": state, "truth": planted}
