"""How ingest and index building grow with the data: 1x, 4x, 16x, on 1 and 2 workers.

    .venv/bin/python bench/scale.py [--base-logs 4] [--seconds 120] [--base-vectors 100000]
                                    [--shard-size N] [--index-kinds hnsw,ivf]
                                    [--skip-ingest] [--skip-index] [--out /tmp/flywheel-bench-scale]

Ingest: generated drive logs (ROS 2 MCAP, `--seconds` each); 1x is `--base-logs` logs, 4x and
16x are 4 and 16 times as many (the same files, generated once and kept under --out). Each run
is a fresh `flywheel ingest` process into a new lake, `--workers 1` and `--workers 2`.

Index: lakes of `--base-vectors` embeddings at 1x, 4x and 16x (the project's FeatureEmbedder
dimension, drawn around the embeddings of real generated scenes with noise, in scenes files of
`--file-rows`), indexed by a fresh `flywheel index --full` process each, for each of
`--index-kinds`: in shards of `--shard-size` (default: the base size, so 1x is one shard) in one
process on 1 and 2 FAISS threads, and on a local Dask cluster of 1 and 2 worker processes (one
thread each, a shard per task); and, as the baseline in the same run, as one unsharded index on
2 threads. Then `--base-vectors` new vectors are added to the 16x lake and `flywheel index`
(incremental) is timed: it builds only the new shards.

For every run: wall time, peak memory (the sum of the resident sets of the process and all its
children, sampled every 20 ms from /proc), and, against the 1x run, the growth of each. Linear
or better means time grows at most as the data (a ratio <= the scale); bounded memory means the
peak stays flat as the data grows (ingest: one log at a time per worker; index: one shard).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

# this folder holds scripts named like the packages they measure
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from rich.console import Console
from rich.table import Table

from sim import generate

SCALES = (1, 4, 16)


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and every descendant."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def measure(command: list[str], env: dict | None = None) -> tuple[float, int]:
    """Run `command`; its wall time and the peak resident memory of its process tree."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(process.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = process.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{err[-2000:]}")
    return seconds, peak


def make_logs(out: Path, count: int, seconds: float) -> list[Path]:
    files: list[Path] = []
    seed = 0
    while len(files) < count:
        folder = out / f"seed-{seed}"
        if not (folder / "truth.json").exists():
            generate(folder, logs=4, seconds=seconds, seed=5000 + seed)
        files += sorted(folder.glob("*.mcap"))
        seed += 1
    return files[:count]


DASK_INDEX = """
import sys
from distributed import LocalCluster
from mining.build import publish_index

if __name__ == "__main__":
    lake, kind, shard_size, workers, full = sys.argv[1:6]
    with LocalCluster(
        n_workers=int(workers), threads_per_worker=1, dashboard_address=None
    ) as cluster:
        publish_index(lake, kind, full=full == "full", shard_size=int(shard_size),
                      scheduler=cluster.scheduler_address)
"""


def index_command(lake: Path, kind: str, shard_size: int, workers: str, full: bool) -> list[str]:
    """`flywheel index` in one process, or the same build on a local Dask cluster of N
    worker processes (children of the measured process, so their memory is counted)."""
    if workers.endswith(("Dask worker", "Dask workers")):
        count = workers.split()[0]
        return [
            sys.executable,
            "-c",
            DASK_INDEX,
            str(lake),
            kind,
            str(shard_size),
            count,
            "full" if full else "incremental",
        ]
    command = [sys.executable, "-m", "cli", "index", "--lake", str(lake)]
    command += ["--kind", kind, "--shard-size", str(shard_size)]
    return command + (["--full"] if full else [])


def seed_embeddings(out: Path, files: list[Path]):
    """Real scene embeddings (FeatureEmbedder) of generated drives, to draw vectors around."""
    import numpy as np

    from flywheel.lake import Lake
    from ingest import ingest

    lake = Lake(out / "seed-lake")
    if not lake.files("scenes"):
        assert ingest(files, lake, workers=2).exit_code == 0
    column = lake.connect().execute("SELECT embedding FROM scenes").fetchnumpy()["embedding"]
    return np.asarray(column.tolist(), dtype=np.float32)


def vector_lake(root: Path, n: int, seeds, file_rows: int, first_part: int = 0) -> int:
    """A lake whose `scenes` hold `n` unit vectors drawn around `seeds`, in files of
    `file_rows` (one file per part, like one per log); parts are deterministic, so the lake of
    4x holds the files of 1x plus three more. Returns the number of files."""
    import numpy as np
    import pyarrow as pa

    from flywheel import schemas
    from flywheel.lake import Lake
    from ingest.embed import FeatureEmbedder

    lake = Lake(root)
    dim = seeds.shape[1]
    parts = -(-n // file_rows)
    for part in range(first_part, first_part + parts):
        name = f"part-{part:05d}"
        if lake.exists("scenes", name):
            continue
        rng = np.random.default_rng(part)
        rows = file_rows
        x = seeds[rng.integers(0, len(seeds), rows)] + rng.normal(0, 0.05, (rows, dim))
        x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
        offsets = pa.array(np.arange(0, rows * dim + 1, dim, dtype=np.int32))
        columns = {
            "scene_id": [f"v-{part:05d}-{i:06d}" for i in range(rows)],
            "log_id": [name] * rows,
            "start_ns": np.arange(rows, dtype=np.int64) * 10**10,
            "end_ns": np.arange(1, rows + 1, dtype=np.int64) * 10**10,
            "embedding": pa.ListArray.from_arrays(offsets, pa.array(x.ravel())),
            "embedding_version": [FeatureEmbedder.version] * rows,
        }
        table = schemas.filled(columns, schemas.SCHEMAS["scenes"], rows)
        lake.write("scenes", table, name=name)
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-logs", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--base-vectors", type=int, default=100_000)
    parser.add_argument(
        "--shard-size", type=int, default=None, help="vectors per shard (default: --base-vectors)"
    )
    parser.add_argument("--file-rows", type=int, default=25_000, help="vectors per scenes file")
    parser.add_argument("--out", type=Path, default=Path("/tmp/flywheel-bench-scale"))
    parser.add_argument("--skip-index", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--index-kinds", default="hnsw,ivf", help="FAISS kinds to build")
    args = parser.parse_args()
    console = Console(width=150)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    files = make_logs(out / "logs", args.base_logs * SCALES[-1], args.seconds)
    rows = []
    for workers in () if args.skip_ingest else (1, 2):
        base = None
        for scale in SCALES:
            chosen = files[: args.base_logs * scale]
            folder = out / f"input-{scale}x"
            folder.mkdir(exist_ok=True)
            for f in chosen:
                link = folder / f"{f.parent.name}-{f.name}"
                if not link.exists():
                    link.symlink_to(f)
            lake = out / f"lake-{scale}x-{workers}w"
            subprocess.run(["rm", "-rf", str(lake)], check=True)
            mb = sum(f.stat().st_size for f in chosen) / 1e6
            seconds, peak = measure(
                [
                    sys.executable,
                    "-m",
                    "cli",
                    "ingest",
                    str(folder),
                    "--lake",
                    str(lake),
                    "--workers",
                    str(workers),
                ],
                env,
            )
            base = base or (seconds, peak)
            rows.append(
                (
                    "ingest",
                    f"{scale}x",
                    f"{len(chosen)} logs, {mb:.0f} MB",
                    workers,
                    seconds,
                    seconds / base[0],
                    peak,
                    peak / base[1],
                )
            )
            console.print(
                f"ingest {scale}x on {workers} workers: {seconds:.1f} s, "
                f"peak {peak / 2**20:.0f} MiB"
            )

    if not args.skip_index:
        seeds = seed_embeddings(out, files[: args.base_logs])
        shard = args.shard_size or args.base_vectors
        largest = out / f"vectors-{SCALES[-1]}x"
        for kind in args.index_kinds.split(","):
            # (label, workers, threads per process, shard size or None for one index)
            configs = [
                (f"shards of {shard:,}", "1 process", 1, shard),
                (f"shards of {shard:,}", "1 process", 2, shard),
                (f"shards of {shard:,}", "1 Dask worker", 1, shard),
                (f"shards of {shard:,}", "2 Dask workers", 1, shard),
                ("1 index (baseline)", "1 process", 2, None),
            ]
            for label, workers, threads, size in configs:
                base = None
                for scale in SCALES:
                    n = args.base_vectors * scale
                    lake = out / f"vectors-{scale}x"
                    vector_lake(lake, n, seeds, args.file_rows)
                    command = index_command(lake, kind, size or n, workers, full=True)
                    seconds, peak = measure(command, {**env, "OMP_NUM_THREADS": str(threads)})
                    base = base or (seconds, peak)
                    where = f"{workers}, {threads} thread{'s' * (threads > 1)}"
                    rows.append(
                        (
                            f"index {kind}, {label}",
                            f"{scale}x",
                            f"{n:,} vectors",
                            where,
                            seconds,
                            seconds / base[0],
                            peak,
                            peak / base[1],
                        )
                    )
                    console.print(
                        f"index {kind}, {label}, {scale}x, {where}: {seconds:.1f} s, "
                        f"peak {peak / 2**20:.0f} MiB"
                    )
            # a day's new data on the largest lake: only its shards are built
            first = -(-args.base_vectors * SCALES[-1] // args.file_rows)
            vector_lake(largest, args.base_vectors, seeds, args.file_rows, first)
            command = index_command(largest, kind, shard, "1 process", full=False)
            seconds, peak = measure(command, {**env, "OMP_NUM_THREADS": "2"})
            rows.append(
                (
                    f"index {kind}, shards of {shard:,}: add 1x",
                    f"{SCALES[-1]}x + 1x",
                    f"+{args.base_vectors:,} vectors",
                    "1 process, 2 threads",
                    seconds,
                    None,
                    peak,
                    None,
                )
            )
            console.print(f"index {kind}, add 1x to {SCALES[-1]}x: {seconds:.1f} s")
            for path in (largest / "scenes").glob("part-*.parquet"):
                if int(path.stem.split("-")[1]) >= first:
                    path.unlink()  # back to 16x for the next kind

    table = Table(title="scale: time and peak memory against the 1x run")
    for column in (
        "stage",
        "scale",
        "data",
        "workers",
        "seconds",
        "time x",
        "peak MiB",
        "memory x",
    ):
        table.add_column(column, justify="right" if column not in ("stage", "data") else "left")
    for stage, scale, data, workers, seconds, tx, peak, mx in rows:
        table.add_row(
            stage,
            scale,
            data,
            str(workers),
            f"{seconds:.1f}",
            "" if tx is None else f"{tx:.2f}",
            f"{peak / 2**20:.0f}",
            "" if mx is None else f"{mx:.2f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
