"""The on-disk ivfpq index at 10M scenes on one machine: build, bytes, memory, recall, latency.

    .venv/bin/python bench/index_disk.py [--n 10000000] [--shard-size 2000000]
        [--file-rows 500000] [--cluster-n 2000000] [--queries 300] [--rebuild]
        [--out /tmp/flywheel-bench-index]

Data: `--n` unit vectors drawn around real scene embeddings (bench/scale.py's generator:
FeatureEmbedder embeddings of generated drives plus N(0, 0.05) per dimension), written as
scenes files of `--file-rows` under --out (kept: a rerun skips them; the index too unless
--rebuild). Held-out queries are drawn the same way and are not in the lake.

Measured:
- build: a fresh `flywheel index --kind ivfpq --full` process in shards of `--shard-size`
  (2 FAISS threads), wall time and peak resident memory of the process tree; and, at
  `--cluster-n` in shards of a quarter of it, one process against a local Dask cluster of 2
  worker processes (one thread each): building 10M twice takes too long here.
- bytes per scene on disk: index, vectors (the re-rank file) and ids files over the count.
- search, in a fresh process that loads only the index (`mining.index.load_index`, not the
  Miner, whose catalog holds every scene's metadata and vector in memory): VmRSS and VmHWM
  after loading and after the queries, one query at a time (k=10) with p50/p99, with the
  shards in parallel threads and in turn, and recall@10 against exact ground truth (a chunked
  numpy scan over every vector, in its own process with OPENBLAS_CORETYPE unset, cached).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# this folder holds scripts named like the packages they measure
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np
from rich.console import Console
from rich.table import Table

K = 10
GOALS = {"resident": 1.5 * 2**30, "recall": 0.9, "p50_ms": 20.0}


def _scale():
    """bench/scale.py, for its vector generator, seeds and process measurement."""
    spec = importlib.util.spec_from_file_location(
        "bench_scale", Path(__file__).with_name("scale.py")
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def held_out(seeds: np.ndarray, n: int) -> np.ndarray:
    """Queries drawn as the lake's vectors are (another seed: not in the lake)."""
    rng = np.random.default_rng(10**6)
    x = seeds[rng.integers(0, len(seeds), n)] + rng.normal(0, 0.05, (n, seeds.shape[1]))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(line.split()[1]) * 1024
    return out


# -- child processes ----------------------------------------------------------------------------
def ground_truth(lake: str, queries_file: str, out_file: str) -> None:
    """Exact top K scene ids of each query: a scan of every scenes file, chunk by chunk."""
    import pyarrow.parquet as pq

    from flywheel.lake import Lake
    from mining.catalog import vectors_of

    queries = np.load(queries_file)
    best_sims = np.full((len(queries), K), -np.inf, np.float32)
    best_ids = np.full((len(queries), K), "", dtype=object)
    for path in sorted(Lake(lake).files("scenes")):
        table = pq.read_table(path, columns=["scene_id", "embedding"])
        vectors, ids = vectors_of(table), np.asarray(table.column("scene_id").to_pylist())
        for lo in range(0, len(vectors), 1_000_000):
            sims = queries @ vectors[lo : lo + 1_000_000].T
            top = np.argpartition(-sims, K - 1, axis=1)[:, :K]
            all_sims = np.hstack([best_sims, np.take_along_axis(sims, top, axis=1)])
            all_ids = np.hstack([best_ids, ids[lo + top]])
            order = np.argsort(-all_sims, axis=1)[:, :K]
            best_sims = np.take_along_axis(all_sims, order, axis=1)
            best_ids = np.take_along_axis(all_ids, order, axis=1)
    np.savez(out_file, sims=best_sims, ids=best_ids.astype(str))


def search(lake: str, queries_file: str, out_file: str, rerank: str) -> None:
    """Load the index alone and search one query at a time; memory, latency, results."""
    import mining.index as index_module

    if rerank:  # "FACTOR,MIN": candidates re-ranked per shard, max(k * FACTOR, MIN)
        index_module.RERANK_FACTOR, index_module.RERANK_MIN = map(int, rerank.split(","))
    report: dict = {"start": status()}
    started = time.perf_counter()
    index = index_module.load_index(lake)
    assert index is not None
    report["load_seconds"] = time.perf_counter() - started
    report["loaded"] = status()
    queries = np.load(queries_file)
    runs: dict[str, dict] = {}
    for label, threads in (("parallel", os.cpu_count() or 1), ("in turn", 1)):
        index_module.SHARD_THREADS = threads
        seconds, found = [], []
        for q in queries:
            t = time.perf_counter()
            _, positions = index.search(q[None, :], K)
            seconds.append(time.perf_counter() - t)
            found.append(positions[0])
        ids = index.ids_at(np.array(found))
        runs[label] = {"seconds": seconds, "ids": ids.astype(str).tolist(), "after": status()}
    report["runs"] = runs
    report["rerank"] = index_module.rerank_count(K)
    # the re-rank from float16 vectors (half the file), on the same candidates: recall only
    for shard in index.shards:
        shard.vectors = np.asarray(shard.vectors, dtype=np.float16)
    index_module.SHARD_THREADS = os.cpu_count() or 1
    _, positions = index.search(queries, K)
    report["float16_ids"] = index.ids_at(positions).astype(str).tolist()
    Path(out_file).write_text(json.dumps(report))


# -- the run ------------------------------------------------------------------------------------
def run_child(mode: str, *args: str, env: dict) -> None:
    subprocess.run([sys.executable, __file__, f"--{mode}", *args], env=env, check=True)


def build(scale, lake: Path, shard: int, workers: str, threads: int, env: dict):
    """Wall time and peak memory of a fresh ivfpq build (Dask workers: one thread each)."""
    command = scale.index_command(lake, "ivfpq", shard, workers, full=True)
    threads = 1 if "Dask" in workers else threads
    return scale.measure(command, {**env, "OMP_NUM_THREADS": str(threads)})


def recall(found: list[list[str]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--shard-size", type=int, default=2_000_000)
    parser.add_argument("--file-rows", type=int, default=500_000)
    parser.add_argument("--cluster-n", type=int, default=2_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rebuild", action="store_true", help="build the index again")
    parser.add_argument("--threads", type=int, default=1, help="FAISS threads of a 1-process build")
    parser.add_argument("--skip-cluster", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("/tmp/flywheel-bench-index"))
    parser.add_argument("--ground-truth", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--search", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument(
        "--rerank", default="", help="FACTOR,MIN of the re-rank (default: mining.index's)"
    )
    args = parser.parse_args()
    if args.ground_truth:
        return ground_truth(*args.ground_truth)
    if args.search:
        return search(*args.search)

    console = Console(width=150)
    scale = _scale()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    seeds = scale.seed_embeddings(out, scale.make_logs(out / "logs", 4, 120.0))
    seeds = seeds[np.lexsort(seeds.T)]  # the lake's SQL gives no order: the queries need one
    console.print(f"{len(seeds)} real scene embeddings of dim {seeds.shape[1]} as seeds")

    lake = out / f"vectors-{args.n}"
    started = time.perf_counter()
    files = scale.vector_lake(lake, args.n, seeds, args.file_rows)
    console.print(f"lake: {files} scenes files, {time.perf_counter() - started:.0f} s")
    manifest_path = lake / "_index" / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    if args.rebuild or manifest.get("kind") != "ivfpq" or manifest.get("count") != args.n:
        seconds, peak = build(scale, lake, args.shard_size, "1 process", args.threads, env)
        (out / f"build-{args.n}.json").write_text(json.dumps([seconds, peak]))
        manifest = json.loads(manifest_path.read_text())
    seconds, peak = json.loads((out / f"build-{args.n}.json").read_text())
    one = f"1 process, {args.threads} thread{'s' * (args.threads > 1)}"
    builds = [(f"{args.n:,} in shards of {args.shard_size:,}", one, seconds, peak)]
    console.print(f"build {args.n:,}: {seconds:.0f} s, peak {peak / 2**20:.0f} MiB")

    if not args.skip_cluster:
        small = out / f"vectors-{args.cluster_n}-cluster"  # its own lake: built twice
        scale.vector_lake(small, args.cluster_n, seeds, args.file_rows)
        quarter = args.cluster_n // 4
        for workers in ("1 process", "2 Dask workers"):
            s, p = build(scale, small, quarter, workers, args.threads, env)
            where = one if workers == "1 process" else f"{workers}, 1 thread each"
            builds.append((f"{args.cluster_n:,} in shards of {quarter:,}", where, s, p))
            console.print(
                f"build {args.cluster_n:,} on {where}: {s:.0f} s, peak {p / 2**20:.0f} MiB"
            )

    sizes: dict[str, int] = {}
    for entry in manifest["shards"]:
        for role, name in entry["files"].items():
            sizes[role] = sizes.get(role, 0) + (lake / "_index" / name).stat().st_size

    queries = held_out(seeds, args.queries)
    queries_file = out / f"queries-{args.queries}.npy"
    np.save(queries_file, queries)
    digest = hashlib.sha256(queries.tobytes()).hexdigest()[:12]
    truth_file = out / f"truth-{args.n}-{digest}.npz"  # of these queries
    if not truth_file.exists():
        started = time.perf_counter()
        # a current numpy at full speed: both unset together (/work/.library/env/README.md)
        plain = {k: v for k, v in env.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
        run_child("ground-truth", str(lake), str(queries_file), str(truth_file), env=plain)
        console.print(f"ground truth: {time.perf_counter() - started:.0f} s")
    truth = np.load(truth_file)["ids"]

    report_file = out / "search.json"
    run_child("search", str(lake), str(queries_file), str(report_file), args.rerank, env=env)
    report = json.loads(report_file.read_text())

    def mib(b: float) -> str:
        return f"{b / 2**20:,.0f} MiB"

    def mark(ok: bool) -> str:
        return "[green]met[/]" if ok else "[red]missed[/]"

    n = manifest["count"]
    table = Table(title=f"ivfpq on disk: {n:,} scenes, {len(manifest['shards'])} shards")
    for column in ("measure", "value", "goal", ""):
        table.add_column(column)
    params = manifest["shards"][0]["params"]
    table.add_row(
        "shard params",
        f"nlist {params['nlist']}, nprobe {params['nprobe']}, m {params['m']}x{params['nbits']}"
        f" bits, pad {params['pad']}, re-rank {report['rerank']} per shard",
        "",
        "",
    )
    for label, where, s, p in builds:
        table.add_row(f"build {label}", f"{s:,.0f} s, peak {mib(p)} ({where})", "", "")
    total = sum(sizes.values())
    parts = ", ".join(f"{role} {size / n:.1f}" for role, size in sizes.items())
    table.add_row("bytes per scene on disk", f"{total / n:.1f} ({parts})", "", "")
    table.add_row("on disk", f"{total / 2**30:.2f} GiB", "", "")
    table.add_row("load", f"{report['load_seconds']:.1f} s", "", "")
    table.add_row(
        "resident after load",
        f"VmRSS {mib(report['loaded']['VmRSS'])} (anon {mib(report['loaded']['RssAnon'])}, "
        f"file-backed {mib(report['loaded']['RssFile'])})",
        "",
        "",
    )
    for label, run in report["runs"].items():
        after = run["after"]
        ms = np.asarray(run["seconds"]) * 1e3
        rec = recall(run["ids"], truth)
        table.add_row(
            f"resident after {len(ms)} queries ({label})",
            f"VmRSS {mib(after['VmRSS'])} (anon {mib(after['RssAnon'])}, file-backed "
            f"{mib(after['RssFile'])}), VmHWM {mib(after['VmHWM'])}",
            "<= 1.5 GiB",
            mark(after["VmHWM"] <= GOALS["resident"]),
        )
        table.add_row(f"recall@10 ({label})", f"{rec:.3f}", ">= 0.9", mark(rec >= GOALS["recall"]))
        p50, p99 = np.percentile(ms, [50, 99])
        table.add_row(
            f"one query, shards {label}",
            f"p50 {p50:.2f} ms, p99 {p99:.2f} ms",
            "p50 <= 20 ms",
            mark(p50 <= GOALS["p50_ms"]),
        )
    table.add_row(
        "recall@10, float16 re-rank", f"{recall(report['float16_ids'], truth):.3f}", "", ""
    )
    console.print(table)


if __name__ == "__main__":
    main()
