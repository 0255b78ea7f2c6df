"""`flywheel demo`: the whole loop on generated data: generate, ingest, index, mine, label,
track, report. Each step calls the same API a user would.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path

import click

from cli._common import expected_errors, lake_option, print_ingest_summary
from flywheel import console
from flywheel.config import load_config
from flywheel.lake import Lake, resolve


@click.command()
@lake_option
@click.option("--logs", default=4, show_default=True, type=click.IntRange(1))
@click.option("--seconds", default=120.0, show_default=True, type=click.FloatRange(10))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1))
@expected_errors
def demo(lake, logs, seconds, seed, workers) -> None:
    """Run the loop on generated data: generate, ingest, and summarise the lake.

    Example: flywheel demo --lake demo-lake
    """
    run_demo(
        load_config({"lake": lake}).lake, logs=logs, seconds=seconds, seed=seed, workers=workers
    )


def run_demo(
    lake: str | os.PathLike | Lake | None = None,
    logs: int = 4,
    seconds: float = 120.0,
    seed: int = 0,
    workers: int = 2,
) -> dict:
    """Generate logs into `<lake>/_demo/logs`, ingest them, print what the lake now holds."""
    from flywheel.summary import lake_summary, print_lake_summary
    from ingest import ingest
    from sim import generate

    target = resolve(lake)
    # the generated logs sit beside the lake (in a local folder when the lake is an object store)
    source = (target.root if target.local else Path(tempfile.mkdtemp(prefix="flywheel-"))) / (
        "_demo/logs"
    )
    console.line(("1. generate", "bold"), f" {logs} drive logs of {seconds:.0f} s (seed {seed})")
    # drives of the day before yesterday (UTC): collected -> ingested is then a realistic
    # upload delay in the report, and a rerun on the same day regenerates the same files
    day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).date()
    generate(source, logs=logs, seconds=seconds, seed=seed, camera=True, day=day)
    truth = json.loads((source / "truth.json").read_text())

    console.line(("2. ingest", "bold"), f" into {target.uri} on {workers} Dask workers")
    files = sorted(source.glob("*.mcap"))
    owned, partner = files[: (len(files) + 1) // 2], files[(len(files) + 1) // 2 :]
    add_demo_sources(target)
    ingested = {}
    with console.progress(logs, "ingest") as advance:
        for name, part in ((FLEET, owned), (PARTNER, partner)):
            if not part:
                continue
            summary = ingested[name] = ingest(
                part,
                target,
                workers=workers,
                source=name,
                on_result=lambda r: advance(1, f"{r.status} {Path(r.source_uri).name}"),
            )
            print_ingest_summary(summary)

    console.line(("3. the lake", "bold"))
    state = lake_summary(target)
    print_lake_summary(state)
    found = planted_events_found(target, truth)
    console.table(
        [(kind, n, hit, f"{hit / n:.0%}") for kind, (n, hit) in sorted(found.items())],
        ["planted event", "planted", "found by tag", "recall"],
        title="generator truth vs scene tags",
    )
    mined = mine_demo(target, truth)
    labeled = label_demo(target)
    reported = report_demo(target, labeled["batches"], seed=seed)
    return {
        "ingest": {name: summary.as_dict() for name, summary in ingested.items()},
        "lake": state,
        "truth": found,
        "mining": mined,
        "labeling": labeled,
        "report": reported,
    }


def label_demo(lake: Lake, wait_s: float = 3.0) -> dict:
    """Submit the demo selection to the simulated vendor, let it work, sync, show the batches.

    The simulated vendor here turns a task around in about a second (median), so the demo's
    timestamps stay real; a real vendor takes hours, configured in `[labeling]`.
    """
    import time

    import labeling

    console.line(("5. label", "bold"), " with the built-in simulated vendor")
    vendor = labeling.SimulatedVendor.for_lake(
        lake.root,
        turnaround_median=dt.timedelta(seconds=1),
        turnaround_sigma=0.5,
        sla=dt.timedelta(seconds=3),
    )
    submitted = labeling.submit(lake, "demo", vendor, batch_size=4)
    console.line(
        f"submitted {submitted.scenes - submitted.skipped} scenes in "
        f"{len(submitted.batches)} batches ({submitted.skipped} already at the vendor)"
    )
    time.sleep(wait_s)
    synced = labeling.sync(lake, vendor)
    frame = labeling.status(lake)
    console.frame(
        frame,
        "table",
        (
            "batch_id",
            "state",
            "tasks",
            "labeled",
            "progress",
            "cost",
            "turnaround_p50_s",
            "past_sla",
        ),
        title="labeling batches",
    )
    outbox = labeling.batches(lake)
    return {
        "submitted": submitted.as_dict(),
        "synced": synced.as_dict(),
        # every batch of the demo selection, this run's or an earlier run's
        "batches": sorted(set(outbox.loc[outbox["selection"] == "demo", "batch_id"])),
    }


def report_demo(lake: Lake, batches: list[str], seed: int = 0, weeks: int = 8) -> dict:
    """Fix the demo's labels as a dataset version, track a model trained on it, add weeks of
    history, write the report (its license alert names the partner source).

    The history (``sim.simulate_history``) gives the trends weeks to show, with a slower
    labeling week at the end so an alert fires; every number then comes from the report's
    one code path, the demo's own scenes included.
    """
    import time

    import metrics
    from sim import simulate_history

    console.line(("6. track and report", "bold"))
    # one annotator begins swapping two classes two weeks ago: label quality should say so
    history = simulate_history(
        lake,
        weeks=weeks,
        scenes_per_week=60,
        seed=seed,
        slowdown=3.0,
        swap=("chen.w", "hard_brake", "cut_in"),
    )
    console.line(
        f"simulated {weeks} weeks of history: {history.scenes} scenes, {history.events} events, "
        f"{history.models} models (tagged simulated_history)"
    )
    model = "demo-model-1"
    from flywheel.lineage import lineage
    from labeling import datasets

    version = datasets.create(lake, "demo", selection="demo", by="demo")
    console.line(f"dataset {version}")
    for stage in ("trained", "evaluated", "deployed"):
        metrics.track(
            lake,
            stage,
            model,
            datasets=[version.ref] if stage == "trained" else (),
            attrs={"map": 0.71} if stage == "evaluated" else None,
            by="demo" if stage == "trained" else None,
            code="demo" if stage == "trained" else None,
            params={"epochs": 10} if stage == "trained" else None,
        )
        time.sleep(0.01)  # distinct, ordered timestamps
    console.line(f"tracked {model}: trained on {version.ref}, evaluated, deployed")
    console.frame(lineage(lake).model(model), "table", title=f"lineage of {model}")
    report = metrics.build(lake)
    path = metrics.write_report(lake, report)
    metrics.print_summary(report)
    console.line(("report:", "bold"), f" {path}")
    return {"path": str(path), "alerts": len(report.alerts), "bottleneck": report.bottleneck}


FLEET, PARTNER = "fleet", "partner-a"
PARTNER_DAYS = 20  # within the report's license warning window (30 days by default)


def add_demo_sources(lake: Lake) -> None:
    """The demo's two sources: the team's own fleet, and a partner whose license ends soon
    (kept as first added when the demo runs again, so its end date stays put)."""
    from flywheel import sources

    known = sources.read(lake)
    if FLEET not in known:
        sources.add(lake, FLEET, "internal: our own fleet", owner="data-team")
    if PARTNER not in known:
        until = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=PARTNER_DAYS)
        sources.add(lake, PARTNER, "Partner A data-sharing EULA v2", until=until, uses="train,eval")


def mine_demo(lake: Lake, truth: dict) -> dict[str, float]:
    """Index, run a few mining queries, save a selection; precision of each against the truth."""
    import mining

    console.line(("4. mine", "bold"))
    miner = mining.open(lake)
    index = miner.build_index()
    console.line(f"indexed {index.count} scenes ({index.kind})")
    brakes = [e for e in truth["events"] if e["kind"] == "hard_brake"]
    rare_kinds = {"animal", "unknown_object"}
    queries: dict[str, tuple] = {}
    if brakes:
        seed = _scenes_of_event(lake, brakes[0])
        if seed:
            queries["similar to a planted hard brake"] = (
                miner.similar(seed[0], k=5),
                {"hard_brake"},
            )
    queries["rare (top 5)"] = (miner.rare(k=5), rare_kinds)
    queries["SQL: hard braking, something within 10 m"] = (
        miner.sql(
            "SELECT * EXCLUDE (embedding) FROM scenes WHERE list_contains(tags, 'hard_brake') "
            "AND min_object_distance < 10 ORDER BY min_accel"
        ),
        {"hard_brake"},
    )
    precision = {}
    rows = []
    for name, (df, kinds) in queries.items():
        hits = _overlaps(lake, df, truth, kinds)
        precision[name] = hits / len(df) if len(df) else 0.0
        rows.append((name, len(df), ", ".join(sorted(kinds)), f"{precision[name]:.0%}"))
    console.table(rows, ["query", "scenes", "planted kind", "precision"], title="mining vs truth")

    candidates = _scene_ids_of([df for df, _ in queries.values()])
    batch = miner.diverse(candidates, n=min(8, len(candidates)))
    miner.save("demo", batch, replace=True)
    console.line(f"saved selection 'demo': {len(batch)} diverse scenes from the queries above")
    return precision


def _scene_ids_of(frames):
    import pandas as pd

    frames = [f[["scene_id"]] for f in frames if len(f)]
    return pd.concat(frames).drop_duplicates("scene_id") if frames else pd.DataFrame()


def _scenes_of_event(lake: Lake, event: dict) -> list[str]:
    con = lake.connect()
    rows = con.execute(
        "SELECT s.scene_id FROM scenes s JOIN logs l USING (log_id) "
        "WHERE l.source_uri LIKE ? AND s.start_ns < ? AND s.end_ns > ? ORDER BY s.min_accel",
        [f"%/{event['log']}", event["end_ns"], event["start_ns"]],
    ).fetchall()
    return [r[0] for r in rows]


def _overlaps(lake: Lake, df, truth: dict, kinds: set[str]) -> int:
    """How many scenes of `df` overlap a planted event of one of `kinds`."""
    import pyarrow as pa

    events = [e for e in truth["events"] if e["kind"] in kinds]
    if not len(df) or not events:
        return 0
    con = lake.connect()
    con.register("picked", pa.table({"scene_id": list(df["scene_id"])}))
    con.register("planted", pa.Table.from_pylist(events))
    return con.execute(
        """
        SELECT count(*) FROM picked p JOIN scenes s USING (scene_id) JOIN logs l USING (log_id)
        WHERE EXISTS (SELECT 1 FROM planted e WHERE l.source_uri LIKE '%/' || e.log
                      AND s.start_ns < e.end_ns AND s.end_ns > e.start_ns)
        """
    ).fetchone()[0]


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
