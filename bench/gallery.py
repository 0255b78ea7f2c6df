"""A 100-scene gallery from a 1,000,000-scene lake, against a naive per-scene query loop.

    .venv/bin/python bench/gallery.py [--scenes 1000000] [--pictures 100] [--out bench/out/gallery]

The lake: one generated drive of 10 minutes, ingested, then tiled under new log ids into logs
of 360 scenes each (an hour of driving) until it holds `--scenes` scenes: every tiled log's
`scenes` file is its own Parquet file, its `ego` and `objects` files hard links to the seed's
(a scene's window repeats one of the seed's, so every picture has samples to draw).

Timed, on `--pictures` scenes drawn at random: Flywheel's `m.show(ids)` in a warm notebook
(the miner's catalog already loaded, as after any search), and `mining.gallery.gallery(lake,
ids)` from cold (the scenes' rows queried from the lake). The baseline: what one writes
without it, one DuckDB query per scene for its row, its ego samples and its objects over the
lake's views, then the same drawing. Prints the times, the page size and the ratios.
Target: a 100-scene gallery in under 2 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

import mining
from flywheel.lake import Lake
from ingest import ingest
from mining import gallery as _gallery
from sim import generate

PER_LOG = 360


def make_lake(out: Path, scenes: int) -> Lake:
    lake = Lake(out / f"lake-{scenes}")
    if (lake.root / "logs").is_dir():
        return lake
    seed = Lake(out / "seed-lake")
    if not (seed.root / "logs").is_dir():
        generate(out / "drives", logs=1, seconds=600, seed=8)
        ingest([out / "drives"], seed)
    con = seed.connect()
    ((seed_id,),) = con.execute("SELECT log_id FROM logs").fetchall()
    seed_scenes = con.sql("SELECT * FROM scenes ORDER BY start_ns").to_arrow_table()
    logs = con.sql("SELECT * FROM logs").to_arrow_table()
    for name in ("scenes", "ego", "objects", "logs"):
        (lake.root / name).mkdir(parents=True, exist_ok=True)
    n_logs = -(-scenes // PER_LOG)
    picks = np.arange(PER_LOG) % seed_scenes.num_rows
    template = seed_scenes.take(pa.array(picks))
    for i in range(n_logs):
        log_id = f"{i:020x}"
        rows = min(PER_LOG, scenes - i * PER_LOG)
        part = template.slice(0, rows)
        part = part.set_column(
            part.schema.get_field_index("log_id"), "log_id", pa.array([log_id] * rows)
        )
        ids = [f"{log_id}-{k:05d}" for k in range(rows)]
        part = part.set_column(part.schema.get_field_index("scene_id"), "scene_id", pa.array(ids))
        pq.write_table(part, lake.root / "scenes" / f"{log_id}.parquet")
        for table in ("ego", "objects"):
            target = lake.root / table / f"{log_id}.parquet"
            os.link(seed.path(table, seed_id), target)
        row = logs.set_column(logs.schema.get_field_index("log_id"), "log_id", pa.array([log_id]))
        pq.write_table(row, lake.root / "logs" / f"{log_id}.parquet")
    return lake


def naive(lake: Lake, ids: list[str]) -> int:
    """One query per scene for its row, its ego samples and its objects, then the drawing."""
    con = lake.connect()
    size = 0
    for scene_id in ids:
        row = con.execute("SELECT * FROM scenes WHERE scene_id = ?", [scene_id]).df().iloc[0]
        window = [row["log_id"], int(row["start_ns"]), int(row["end_ns"])]
        ego = con.execute(
            "SELECT t_ns, x, y, yaw, speed FROM ego WHERE log_id = ? AND t_ns >= ? AND t_ns < ? "
            "ORDER BY t_ns",
            window,
        ).df()
        objects = con.execute(
            "SELECT t_ns, track_id, category, x, y, length, width FROM objects "
            "WHERE log_id = ? AND t_ns >= ? AND t_ns < ?",
            window,
        ).df()
        size += len(_gallery.picture(row, ego, _gallery._to_map(objects, ego)))
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=1_000_000)
    parser.add_argument("--pictures", type=int, default=100)
    parser.add_argument("--naive", type=int, default=10, help="scenes the naive loop draws")
    parser.add_argument("--out", type=Path, default=Path("bench/out/gallery"))
    args = parser.parse_args()
    lake = make_lake(args.out, args.scenes)
    miner = mining.open(lake)
    started = time.perf_counter()
    catalog = miner.catalog()
    loaded = time.perf_counter() - started
    rng = np.random.default_rng(0)
    ids = [str(s) for s in rng.choice(catalog.ids, args.pictures, replace=False)]

    miner.show(ids[:3])  # warm: imports, the lake's connection
    started = time.perf_counter()
    warm = miner.show(ids)
    warm_s = time.perf_counter() - started
    started = time.perf_counter()
    cold = _gallery.gallery(lake, ids)
    cold_s = time.perf_counter() - started
    assert warm.scene_ids == cold.scene_ids == ids
    page = len(warm.html().encode())

    few = ids[: args.naive]
    started = time.perf_counter()
    naive(lake, few)
    naive_s = (time.perf_counter() - started) * len(ids) / len(few)

    view = Table(title=f"a {len(ids)}-scene gallery from a {catalog.count:,}-scene lake")
    for column in ("", "seconds", "vs naive"):
        view.add_column(column, justify="right")
    view.add_row("m.show(ids), catalog loaded", f"{warm_s:.2f}", f"{naive_s / warm_s:.1f}x")
    view.add_row("gallery(lake, ids) from cold", f"{cold_s:.2f}", f"{naive_s / cold_s:.1f}x")
    view.add_row(f"naive per-scene queries (on {len(few)}, scaled)", f"{naive_s:.2f}", "1.0x")
    view.add_row("(loading the catalog once)", f"{loaded:.2f}", "")
    console = Console()
    console.print(view)
    console.print(
        f"page: {page / 1e6:.2f} MB for {len(ids)} pictures ({page / len(ids) / 1e3:.0f} kB each); "
        f"target < 2 s: {'met' if warm_s < 2 else 'missed'} ({warm_s:.2f} s warm, "
        f"{cold_s:.2f} s cold)"
    )


if __name__ == "__main__":
    main()
