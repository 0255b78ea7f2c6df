"""The cycle-time report at fleet scale: DuckDB over the lake vs a naive pandas version.

    .venv/bin/python bench/report.py [--scenes 1000000] [--weeks 26] [--out DIR] [--fresh]

Data: ``sim.simulate_history`` writes a lake of `--scenes` scenes collected over `--weeks`
weeks, every one through the stages (ingested, mined in 6 selections on average, submitted in
batches of 1,000 to two vendors, labeled, half of them labeled twice, trained, evaluated,
deployed by weekly models): about 8M events at 1M scenes, in the lake's own tables. The lake
is kept under --out and reused when it matches (pass --fresh to rebuild).

Measured, in one run:

1. ``metrics.build`` (stitching + every aggregate + alerts + lineage), best of --repeat;
2. the HTML page written from it;
3. a naive pandas implementation of the same numbers: read the tables, ``json.loads`` each
   event's attrs, group and merge in pandas, ``numpy.percentile`` per stage (what one would
   write in a notebook).

Both must give the same numbers (stage counts and p50/p90/p99, cycle, WIP, bottleneck, vendor
turnaround); the ratio is printed. Target: ``build`` under 10 s at 1M scenes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

# bench/labeling.py and bench/mining.py would shadow the packages of the same name
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import metrics
from flywheel.lake import Lake
from sim import simulate_history

NOW = dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC)
STAGES = metrics.STAGES


def make_lake(root: Path, scenes: int, weeks: int, fresh: bool) -> Lake:
    stamp = root / "_bench.json"
    wanted = {"scenes": scenes, "weeks": weeks, "version": 1}
    if not fresh and stamp.exists() and json.loads(stamp.read_text()) == wanted:
        print(f"reusing {root}")
        return Lake(root)
    shutil.rmtree(root, ignore_errors=True)
    t = time.perf_counter()
    history = simulate_history(
        root,
        weeks=weeks,
        scenes_per_week=math.ceil(scenes / weeks),
        now=NOW,
        slowdown=2.0,
        vendors=("label-studio", "simulated"),
        dim=8,
        mined_per_scene=6,
        relabel_fraction=0.5,
        batch_size=1000,
    )
    print(
        f"wrote {history.scenes:,} scenes, {history.events:,} events, {history.batches:,} "
        f"batches, {history.models} models in {time.perf_counter() - t:.1f} s"
    )
    stamp.write_text(json.dumps(wanted))
    return Lake(root)


def naive(root: Path, now: dt.datetime) -> dict:
    """The same numbers with pandas, the way a notebook would do it."""
    ev = pd.read_parquet(root / "events", columns=["entity_id", "stage", "at", "attrs"])
    ev["t"] = ev["at"].astype("int64") / 1e6
    scenes = pd.read_parquet(root / "scenes", columns=["scene_id", "log_id", "end_ns"])
    logs = pd.read_parquet(root / "logs", columns=["log_id", "ingested_at"])
    scenes = scenes[scenes["log_id"].isin(logs["log_id"])]
    frame = scenes.assign(collected=scenes["end_ns"] / 1e9)[["scene_id", "log_id", "collected"]]

    ingested = ev[ev["stage"] == "ingested"].groupby("entity_id")["t"].min().rename("ingested")
    frame = frame.merge(ingested, left_on="log_id", right_index=True, how="left")
    firsts = (
        ev[ev["stage"].isin(["mined", "submitted", "labeled"])]
        .groupby(["entity_id", "stage"])["t"]
        .min()
        .unstack()
    )
    frame = frame.merge(firsts, left_on="scene_id", right_index=True, how="left")

    submitted = ev[ev["stage"] == "submitted"]
    scene_batches = pd.DataFrame(
        {
            "scene_id": submitted["entity_id"].to_numpy(),
            "batch_id": [json.loads(a)["batch_id"] for a in submitted["attrs"]],
        }
    ).drop_duplicates()
    trained = ev[ev["stage"] == "trained"]
    model_batches = pd.DataFrame(
        {
            "model_id": trained["entity_id"].to_numpy(),
            "trained": trained["t"].to_numpy(),
            "batch_id": [json.loads(a)["batches"] for a in trained["attrs"]],
        }
    ).explode("batch_id")
    model_stages = (
        ev[ev["stage"].isin(["evaluated", "deployed"])]
        .groupby(["entity_id", "stage"])["t"]
        .min()
        .unstack()
        .reindex(columns=["evaluated", "deployed"])
    )
    batch_stages = (
        model_batches.merge(model_stages, left_on="model_id", right_index=True, how="left")
        .groupby("batch_id")[["trained", "evaluated", "deployed"]]
        .min()
    )
    scene_models = (
        scene_batches.merge(batch_stages, left_on="batch_id", right_index=True)
        .groupby("scene_id")[["trained", "evaluated", "deployed"]]
        .min()
    )
    frame = frame.merge(scene_models, left_on="scene_id", right_index=True, how="left")
    frame = frame.reindex(columns=["scene_id", "log_id", *STAGES])

    out: dict = {"stages": {}}
    for i, stage in enumerate(STAGES[1:], start=1):
        previous = frame[list(STAGES[:i])].ffill(axis=1).iloc[:, -1]
        frame[f"{stage}_s"] = frame[stage] - previous
        lat = frame[f"{stage}_s"].dropna().to_numpy()
        q = np.percentile(lat, [50, 90, 99]) if len(lat) else [None] * 3
        out["stages"][stage] = (int(frame[stage].notna().sum()), *q)
    done = frame[frame["deployed"].notna()]
    cycle = (done["deployed"] - done["collected"]).to_numpy()
    out["cycle"] = (len(cycle), *np.percentile(cycle, [50, 90, 99]))
    reached = frame[list(STAGES)].notna().to_numpy()
    last = np.array(STAGES)[reached.shape[1] - 1 - np.argmax(reached[:, ::-1], axis=1)]
    out["wip"] = {s: int((last == s).sum()) for s in STAGES[:-1]}
    medians = {s: float(np.median(done[f"{s}_s"].dropna())) for s in STAGES[1:]}
    out["bottleneck"] = max(medians, key=medians.get)

    tasks = pd.read_parquet(root / "tasks", columns=["vendor", "submitted_at", "completed_at"])
    turnaround = (tasks["completed_at"] - tasks["submitted_at"]).dt.total_seconds()
    out["vendors"] = {
        v: (len(g), int(g.notna().sum()), float(np.percentile(g.dropna(), 50)))
        for v, g in turnaround.groupby(tasks["vendor"])
    }
    return out


def from_report(report: metrics.Report) -> dict:
    return {
        "stages": {
            s["stage"]: (s["count"], s["p50_s"], s["p90_s"], s["p99_s"])
            for s in report.stages
            if s["stage"] != "collected"
        },
        "cycle": (
            report.cycle["count"],
            report.cycle["p50_s"],
            report.cycle["p90_s"],
            report.cycle["p99_s"],
        ),
        "wip": report.wip,
        "bottleneck": report.bottleneck,
        "vendors": {
            v["vendor"]: (v["tasks"], v["labeled"], v["turnaround_p50_s"]) for v in report.vendors
        },
    }


def same(a, b, path="") -> list[str]:
    """Differences between two nested results (floats to 1e-6 relative)."""
    if isinstance(a, dict):
        keys = set(a) | set(b)
        return [d for k in sorted(keys) for d in same(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, tuple | list):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in same(x, y, path)]
    if isinstance(a, float | np.floating) or isinstance(b, float | np.floating):
        ok = a is not None and b is not None and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-3)
        return [] if ok else [f"{path}: {a} != {b}"]
    return [] if a == b else [f"{path}: {a} != {b}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=1_000_000)
    parser.add_argument("--weeks", type=int, default=26)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("/tmp/flywheel-bench-report"))
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args()

    lake = make_lake(args.out / "lake", args.scenes, args.weeks, args.fresh)
    con = lake.connect()
    n_scenes = con.execute("SELECT count(*) FROM scenes").fetchone()[0]
    n_events = con.execute("SELECT count(*) FROM events").fetchone()[0]
    print(f"lake: {n_scenes:,} scenes, {n_events:,} events")

    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        report = metrics.build(lake, now=NOW)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    page = metrics.write_html(report, args.out / "report.html")
    html_s = time.perf_counter() - t

    t = time.perf_counter()
    baseline = naive(lake.root, NOW)
    naive_s = time.perf_counter() - t

    diffs = same(from_report(report), baseline)
    best = min(times)
    print(f"metrics.build     best {best:6.2f} s  (runs: {', '.join(f'{x:.2f}' for x in times)})")
    print(f"html page         {html_s:6.2f} s  ({page.stat().st_size / 1024:.0f} KiB, {page})")
    print(f"naive pandas      {naive_s:6.2f} s")
    print(f"ratio             {naive_s / best:6.1f}x faster than naive pandas")
    print(f"target            build < 10 s: {'met' if best < 10 else 'NOT met'}")
    print(f"same numbers      {'yes' if not diffs else 'NO'}")
    for d in diffs[:20]:
        print("  ", d)
    print(f"alerts            {len(report.alerts)}: {', '.join(a['id'] for a in report.alerts)}")
    if diffs:
        sys.exit(1)


if __name__ == "__main__":
    main()
