"""Ingest throughput against two baselines over the same files, in one run.

    .venv/bin/python bench/ingest.py [--mb 200] [--out bench/out/ingest]

Baselines: (a) raw iteration with the mcap reader, no decoding: the ceiling for Python;
(b) decoding every message with mcap-ros2-support's decoder: the naive approach.
Then flywheel's own MCAP reader alone (the same walk over the files, no decoding: it compares
with (a) like for like), then flywheel's ingest end to end (hash, decode, scenes, embeddings,
Parquet commit) on 1 and 2 workers. Prints MB/s, messages/s and the ratios. Targets: ingest
>= 5x the naive decoder's rate, and 2 workers >= 1.7x faster than 1.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

# this script is named like the package it measures: keep its own folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rich.console import Console
from rich.table import Table

from flywheel.lake import Lake
from ingest import ingest
from ingest.readers import mcap
from ingest.readers._collect import _Collector
from ingest.readers._io import mapped
from sim import generate


def make_data(out: Path, megabytes: float, seconds: float) -> list[Path]:
    """Generated logs totalling at least `megabytes`, one folder per seed (kept between runs)."""
    files: list[Path] = []
    seed = 0
    while sum(f.stat().st_size for f in files) < megabytes * 1e6:
        folder = out / f"seed-{seed}"
        if not (folder / "truth.json").exists():
            generate(folder, logs=2, seconds=seconds, seed=1000 + seed)
        files += sorted(folder.glob("*.mcap"))
        seed += 1
    return files


def raw_iteration(files: list[Path]) -> int:
    messages = 0
    for path in files:
        with open(path, "rb") as handle:
            for _ in make_reader(handle).iter_messages():
                messages += 1
    return messages


def flywheel_reader(files: list[Path]) -> int:
    """Flywheel's MCAP walk (decompress, CRCs, records, per-topic counts) without the decode:
    a collector decodes only in `finish`, which is not called."""
    messages = 0
    for path in files:
        collector = _Collector(path, None)
        with mapped(path) as data:
            mcap.read_mcap(data, collector)
        messages += collector.total
    return messages


def naive_decode(files: list[Path]) -> int:
    messages = 0
    for path in files:
        with open(path, "rb") as handle:
            reader = make_reader(handle, decoder_factories=[DecoderFactory()])
            for _ in reader.iter_decoded_messages():
                messages += 1
    return messages


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200.0, help="size of the generated data")
    parser.add_argument("--seconds", type=float, default=300.0, help="length of each log")
    parser.add_argument("--out", type=Path, default=Path("bench/out/ingest"))
    parser.add_argument("--skip-naive", action="store_true", help="skip the slow baseline")
    args = parser.parse_args()

    console = Console(stderr=True)
    console.print(f"generating >= {args.mb:.0f} MB of drive logs in {args.out} ...")
    files, gen_s = timed(make_data, args.out / "data", args.mb, args.seconds)
    size = sum(f.stat().st_size for f in files)
    console.print(f"{len(files)} files, {size / 1e6:.0f} MB ({gen_s:.1f} s)")

    rows = []
    messages, raw_s = timed(raw_iteration, files)
    rows.append(("raw mcap iteration (ceiling)", raw_s))
    read, reader_s = timed(flywheel_reader, files)
    assert read == messages
    rows.append(("flywheel MCAP reader, no decode", reader_s))
    if not args.skip_naive:
        _, naive_s = timed(naive_decode, files)
        rows.append(("mcap-ros2-support decode (naive)", naive_s))
    for workers in (1, 2):
        lake = args.out / f"lake-{workers}"
        shutil.rmtree(lake, ignore_errors=True)
        summary, seconds = timed(ingest, files, Lake(lake), workers=workers)
        assert summary.exit_code == 0, [r for r in summary.results if r.rejected]
        assert sum(r.message_count for r in summary.results) == messages
        rows.append((f"flywheel ingest, {workers} worker{'s' * (workers > 1)}", seconds))

    times = dict(rows)
    table = Table(title=f"ingest of {len(files)} files, {size / 1e6:.0f} MB, {messages:,} messages")
    for column in ("run", "seconds", "MB/s", "messages/s"):
        table.add_column(column, justify="right" if column != "run" else "left")
    for name, seconds in rows:
        table.add_row(
            name, f"{seconds:.2f}", f"{size / 1e6 / seconds:.1f}", f"{messages / seconds:,.0f}"
        )
    out = Console()
    out.print(table)
    one, two = times["flywheel ingest, 1 worker"], times["flywheel ingest, 2 workers"]
    if not args.skip_naive:
        naive = times["mcap-ros2-support decode (naive)"]
        out.print(f"ingest (1 worker) vs naive decode: {naive / one:.1f}x   (target >= 5x)")
        out.print(f"ingest (2 workers) vs naive decode: {naive / two:.1f}x")
    out.print(f"flywheel reader vs raw iteration: {raw_s / reader_s:.2f}x the rate")
    out.print(f"raw iteration vs ingest (1 worker): ingest takes {one / raw_s:.1f}x the ceiling")
    out.print(f"2 workers vs 1: {one / two:.2f}x faster   (target >= 1.7x)")


if __name__ == "__main__":
    main()
