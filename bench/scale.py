"""How ingest and index building grow with the data: 1x, 4x, 16x, on 1 and 2 workers.

    .venv/bin/python bench/scale.py [--base-logs 4] [--seconds 120] [--base-vectors 50000]
                                    [--out /tmp/flywheel-bench-scale]

Ingest: generated drive logs (ROS 2 MCAP, `--seconds` each); 1x is `--base-logs` logs, 4x and
16x are 4 and 16 times as many (the same files, generated once and kept under --out). Each run
is a fresh `flywheel ingest` process into a new lake, `--workers 1` and `--workers 2`.

Index: `--base-vectors` embeddings at 1x (the project's FeatureEmbedder dimension, drawn around
the embeddings of real generated scenes with noise, like bench/mining.py), for each of
`--index-kinds` (HNSW is what `--kind auto` picks at this size; IVF for comparison), on 1 and 2
FAISS threads, in a fresh process each.

For every run: wall time, peak memory (the sum of the resident sets of the process and all its
children, sampled every 20 ms from /proc), and, against the 1x run, the growth of each. Linear
or better means time grows at most as the data (a ratio <= the scale); bounded memory means the
ingest peak stays flat as the data grows (one log at a time per worker), while an in-memory
index necessarily holds every vector.
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

from ingest import generate

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


INDEX_SCRIPT = """
import sys, numpy as np, faiss
from mining.index import _make
n, threads, seed_file, kind = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
faiss.omp_set_num_threads(threads)
seeds = np.load(seed_file)
rng = np.random.default_rng(0)
picks = seeds[rng.integers(0, len(seeds), n)]
x = (picks + rng.normal(0, 0.05, picks.shape)).astype(np.float32)
x /= np.linalg.norm(x, axis=1, keepdims=True)
_make(kind, x, x.shape[1])
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-logs", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--base-vectors", type=int, default=50_000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/flywheel-bench-scale"))
    parser.add_argument("--skip-index", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--index-kinds", default="hnsw,ivf", help="FAISS kinds to build")
    args = parser.parse_args()
    console = Console()
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
                    "flywheel.cli",
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
        import numpy as np

        from flywheel.lake import Lake
        from ingest.embed import FeatureEmbedder

        seeds = np.asarray(
            Lake(out / f"lake-{SCALES[-1]}x-1w")
            .connect()
            .execute("SELECT embedding FROM scenes")
            .fetchnumpy()["embedding"]
            .tolist(),
            dtype=np.float32,
        )
        assert seeds.shape[1] == FeatureEmbedder().dim
        seed_file = out / "seed-embeddings.npy"
        np.save(seed_file, seeds)
        for kind in args.index_kinds.split(","):
            for threads in (1, 2):
                base = None
                for scale in SCALES:
                    n = args.base_vectors * scale
                    command = [
                        sys.executable,
                        "-c",
                        INDEX_SCRIPT,
                        str(n),
                        str(threads),
                        str(seed_file),
                        kind,
                    ]
                    seconds, peak = measure(command, env)
                    base = base or (seconds, peak)
                    rows.append(
                        (
                            f"index ({kind})",
                            f"{scale}x",
                            f"{n:,} vectors",
                            threads,
                            seconds,
                            seconds / base[0],
                            peak,
                            peak / base[1],
                        )
                    )
                    console.print(
                        f"index {kind} {scale}x on {threads} threads: "
                        f"{seconds:.1f} s, peak {peak / 2**20:.0f} MiB"
                    )

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
            f"{tx:.2f}",
            f"{peak / 2**20:.0f}",
            f"{mx:.2f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
