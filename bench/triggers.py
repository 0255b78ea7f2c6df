"""Ten triggers over 100 hours of 10 Hz drive signals, against a naive pandas loop, in one run.

    .venv/bin/python bench/triggers.py [--hours 100] [--naive-hours 10] [--out bench/out/triggers]

The lake: generated drives (ego at 10 Hz, their perceived objects, scenes, and the signal
frame ingest stores per log in `signals`), ingested once, then tiled under new log ids until
it holds `--hours` of samples, as ordinary per-log Parquet files. Flywheel: what `trigger run`
does, timed together: the frame read from `signals` into one DuckDB table, and the ten
triggers evaluated on it. Also timed: the frame built from scratch from `ego` and `objects`
(DuckDB: per-frame object aggregates, an ASOF join to the ego samples), which is what ingest
pays once per log and `trigger run` pays for a log ingested before frames were stored. The
baseline: the same frame, each trigger's condition checked sample by sample in a Python loop
over the rows (what one writes without a run-length engine), on `--naive-hours` of the
frame and scaled by samples. Prints the times, real-time factors, the ratio and peak memory.
Targets: the ten triggers over 100 hours in under 10 s frame included (36,000x real time),
and at least 20x the naive loop.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from flywheel.lake import Lake
from ingest import hits, ingest, signals, triggers
from sim import generate

# (name, DuckDB condition, the same condition on one row for the naive loop, --for seconds)
TRIGGERS = [
    ("hard_brake", "accel < -4", lambda r: r.accel < -4, 0.3),
    (
        "ped_in_path",
        "nearest_in_path_pedestrian_m < 15",
        lambda r: r.nearest_in_path_pedestrian_m < 15,
        0.5,
    ),
    (
        "brake_near_ped",
        "accel < -3 AND nearest_pedestrian_m < 20",
        lambda r: r.accel < -3 and r.nearest_pedestrian_m < 20,
        0.5,
    ),
    ("low_ttc", "ttc_s < 2", lambda r: r.ttc_s < 2, 0.3),
    ("fast", "speed > 25", lambda r: r.speed > 25, 5.0),
    ("sharp_turn", "abs(yaw_rate) > 0.3", lambda r: abs(r.yaw_rate) > 0.3, 0.5),
    ("close_object", "nearest_m < 3", lambda r: r.nearest_m < 3, 0.2),
    ("crowd", "n_pedestrians >= 3", lambda r: r.n_pedestrians >= 3, 1.0),
    ("swerve", "abs(lateral_accel) > 2", lambda r: abs(r.lateral_accel) > 2, 0.3),
    ("animal", "nearest_animal_m < 30", lambda r: r.nearest_animal_m < 30, 0.2),
]


def make_lake(out: Path, hours: float) -> Lake:
    """A lake of `hours` of 10 Hz samples: generated drives, ingested, tiled (kept between runs)."""
    lake = Lake(out / f"lake-{hours:g}h")
    if (lake.root / "logs").is_dir():
        return lake
    seed_lake = Lake(out / "seed-lake")
    if not (seed_lake.root / "logs").is_dir():
        generate(out / "drives", logs=6, seconds=600, seed=16)
        ingest([out / "drives"], seed_lake, workers=2)
    con = seed_lake.connect()
    tables = {
        t: con.sql(f"SELECT * FROM {t} ORDER BY log_id").to_arrow_table()
        for t in ("ego", "objects", "scenes", "signals", "logs")
    }
    seed_hours = tables["ego"].num_rows / 10 / 3600
    copies = int(np.ceil(hours / seed_hours))
    logs = tables["logs"]["log_id"].to_pylist()
    for copy in range(copies):
        for log_id in logs:
            new_id = f"{log_id[:12]}{copy:08d}"
            for name, table in tables.items():
                part = table.filter(pa.compute.equal(table["log_id"], log_id))
                part = part.set_column(
                    part.schema.get_field_index("log_id"),
                    "log_id",
                    pa.array([new_id] * part.num_rows),
                )
                if name == "scenes":
                    ids = [f"{new_id}-{s.rsplit('-', 1)[1]}" for s in part["scene_id"].to_pylist()]
                    part = part.set_column(
                        part.schema.get_field_index("scene_id"), "scene_id", pa.array(ids)
                    )
                folder = lake.root / name
                folder.mkdir(parents=True, exist_ok=True)
                pq.write_table(part, folder / f"{new_id}.parquet", compression="zstd")
    return lake


def naive(frame: pd.DataFrame) -> int:
    """Each trigger sample by sample: the loop one writes without a run-length engine."""
    found = 0
    for _name, _sql, holds, for_s in TRIGGERS:
        for _log, rows in frame.groupby("log_id", sort=False):
            start = last = None
            for row in rows.itertuples(index=False):
                if holds(row):
                    start = row.t_ns if start is None else start
                    last = row.t_ns
                elif start is not None:
                    found += (last - start) >= for_s * 1e9
                    start = None
            if start is not None:
                found += (last - start) >= for_s * 1e9
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=100.0)
    parser.add_argument("--naive-hours", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("bench/out/triggers"))
    parser.add_argument("--fresh", action="store_true", help="rebuild the lake")
    args = parser.parse_args()
    if args.fresh:
        shutil.rmtree(args.out, ignore_errors=True)
    lake = make_lake(args.out, args.hours)

    con = lake.connect()
    started = time.perf_counter()
    signals.build(con, "SELECT * EXCLUDE (frame_version) FROM signals")
    read = time.perf_counter() - started
    frame = hits.Frame(con)
    total_hits = 0
    for _name, sql, _holds, for_s in TRIGGERS:
        total_hits += hits.find(con, hits.Spec(sql, for_s), frame, None).num_rows
    ours = time.perf_counter() - started
    samples = frame.n
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    started = time.perf_counter()
    signals.build(con, signals.frame_sql("ego", "objects"), into="scratch")
    scratch = time.perf_counter() - started

    keep = int(samples * min(1.0, args.naive_hours / args.hours))
    subset = triggers.frame(con).iloc[:keep]
    started = time.perf_counter()
    naive_hits = naive(subset)
    naive_s = (time.perf_counter() - started) * samples / max(keep, 1)

    hours = samples / 10 / 3600
    view = Table(title=f"{len(TRIGGERS)} triggers over {hours:,.1f} h ({samples:,} samples)")
    for column in ("", "seconds", "x real time", "hits"):
        view.add_column(column, justify="right")
    view.add_row("flywheel: frame read from signals", f"{read:.2f}", "", "")
    view.add_row(
        "flywheel: frame + triggers",
        f"{ours:.2f}",
        f"{hours * 3600 / ours:,.0f}",
        f"{total_hits:,}",
    )
    view.add_row(
        "frame built from ego + objects (ingest, once per log)",
        f"{scratch:.2f}",
        f"{hours * 3600 / scratch:,.0f}",
        "",
    )
    view.add_row(
        f"naive loop (on {keep:,} samples, scaled)",
        f"{naive_s:.1f}",
        f"{hours * 3600 / naive_s:,.0f}",
        f"{naive_hits:,} in the subset",
    )
    console = Console()
    console.print(view)
    console.print(
        f"ratio vs naive: {naive_s / ours:.1f}x (target >= 20x); "
        f"100 h target < 10 s: {'met' if ours < 10 * hours / 100 else 'missed'} "
        f"({ours:.2f} s for {hours:.1f} h); peak memory {peak_mib:,.0f} MiB"
    )


if __name__ == "__main__":
    main()
