"""Mining search at scale: the default index against numpy brute force, in one run.

    .venv/bin/python bench/mining.py [--n 1000000] [--out bench/out/mining]
                                     [--dim 768 --kind ivfpq]

Data: generated drive logs (sim.generate, cached under --out) are ingested into a source
lake; its real scene embeddings (FeatureEmbedder, 35-dim, unit norm) are expanded to N scenes
by perturbing real scenes: each synthetic scene copies a source scene's features, jitters
them (speeds, decelerations, distances x lognormal noise, object counts rescaled, the hour
shifted), takes its kinematics from another source scene with the same tags one time in three,
is embedded with the project's embedder, then gets small Gaussian noise in embedding space and
is re-normalised. Held-out queries are made the same way and are not in the lake. With
`--dim D` (wide embeddings, as a learned encoder gives) every scene's 35 numbers are lifted to
D by a fixed random layer (tanh), with noise of its own in D dimensions, so the same scenes,
filters and neighbourhoods are measured at width D. The N scenes
are written as a lake's `scenes` table with their metadata (filters independent of the
embedding use a hash of the scene id), so `mining.open(lake)` and `build_index` are measured.

Measured for the index of `--kind` (default `auto`): build time, single-query p50/p99 through the
API (`Miner.similar(vector, k=10)`) and on the FAISS index alone, batched QPS (FAISS directly
and through the API's batch form), recall@10 against exact search; filtered `similar(...,
where=...)` at ~0.1%, 1%, 10%, 50% and 90% selectivity, independent of and correlated with the
embedding, with recall@10 against exact filtered ground truth; numpy brute force as the
baseline. Targets: recall@10 >= 0.95 unfiltered with the API's p50 within 0.3 ms of the index
alone and >= 100x numpy brute force; filtered recall@10 >= 0.99 and p50 <= 3 ms at every
selectivity (5 ms at width 768), a `where` never seen before costing <= 20 ms more.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import time
from pathlib import Path

# this script is named like the package it measures: keep its own folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import duckdb
import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.table import Table

import mining
from flywheel.lake import Lake
from ingest import ingest
from ingest.embed import FeatureEmbedder
from ingest.scenes import SCENE_FEATURES
from mining import index as mining_index
from mining import search as _search
from sim import generate

K = 10
TARGET_RECALL, TARGET_SPEEDUP, TARGET_FILTERED_RECALL = 0.95, 100.0, 0.99
TARGET_API_OVERHEAD_MS, TARGET_FIRST_EXTRA_MS = 0.3, 20.0
TARGET_FILTERED_P50_MS = {35: 3.0, 768: 5.0}  # by width; the wider target applies beyond 35
# the data's defaults: bench/peers.py rebuilds the same lake and held-out queries from them
LOGS, SECONDS, QUERIES, NOISE, JITTER, SEED = 24, 300.0, 1000, 0.01, 0.15, 3
KINEMATIC = (
    "max_speed",
    "mean_speed",
    "max_decel",
    "max_jerk",
    "max_abs_yaw_rate",
    "max_lateral_accel",
    "min_accel",
)
COUNTS = (
    "n_tracks",
    "n_in_path",
    "n_cars",
    "n_trucks",
    "n_buses",
    "n_motorcycles",
    "n_pedestrians",
    "n_cyclists",
    "n_animals",
    "n_other",
    "n_objects",
    "n_ego_samples",
)
CORRELATED_POOL = (  # real `where`s that pick a region of the embedding space
    "n_pedestrians > 0",
    "n_pedestrians = 0",
    "is_night",
    "NOT is_night",
    "n_cyclists > 0",
    "n_in_path > 0",
    "list_contains(tags, 'hard_brake')",
    "list_contains(tags, 'pedestrian_in_path')",
    "list_contains(tags, 'cut_in')",
    "list_contains(tags, 'near_miss')",
    "list_contains(tags, 'animal')",
    "list_contains(tags, 'unknown_object')",
    "list_contains(tags, 'high_speed')",
    "list_contains(tags, 'stopped')",
    "list_contains(tags, 'sharp_turn')",
    "len(tags) = 0",
)

err = Console(stderr=True)


def log(message: str) -> None:
    err.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {message}")


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - started


# -- data ---------------------------------------------------------------------------------------
def source_scenes(out: Path, logs: int, seconds: float, seed: int) -> tuple[pa.Table, pa.Table]:
    """Real scenes (with embeddings) and logs of generated drives, ingested once and cached."""
    drives = out / f"drives-{logs}x{seconds:g}-s{seed}"
    if not (drives / "truth.json").exists():
        log(f"generating {logs} logs x {seconds:g} s in {drives} ...")
        generate(drives, logs=logs, seconds=seconds, seed=seed)
    lake = Lake(out / f"source-lake-{logs}x{seconds:g}-s{seed}")
    if not lake.files("scenes"):
        log(f"ingesting them into {lake.root} ...")
        summary = ingest(sorted(drives.glob("*.mcap")), lake, workers=2)
        assert summary.exit_code == 0, [r for r in summary.results if r.rejected]
    con = lake.connect()
    scenes = con.sql("SELECT * FROM scenes ORDER BY scene_id").to_arrow_table()
    return scenes, lake.read("logs")


def expand(src: pa.Table, n: int, rng: np.random.Generator, noise: float, jitter: float):
    """`n` perturbed copies of real scenes: (metadata table, unit vectors float32)."""
    m = src.num_rows
    pick = rng.integers(0, m, n)
    # a donor with the same tag set gives the kinematics one time in three (new combinations)
    keys = np.array(["|".join(sorted(t)) for t in src.column("tags").to_pylist()], dtype=object)
    _, group = np.unique(keys, return_inverse=True)
    order = np.argsort(group, kind="stable")
    starts = np.searchsorted(group[order], np.arange(group.max() + 1))
    sizes = np.bincount(group)
    g = group[pick]
    donor = order[starts[g] + (rng.random(n) * sizes[g]).astype(np.int64)]
    donor = np.where(rng.random(n) < 1 / 3, donor, pick)

    def col(name, rows):
        return np.asarray(src.column(name).cast(pa.float64()).to_numpy(), np.float64)[rows]

    out: dict[str, object] = {}
    for name in SCENE_FEATURES:
        if name in COUNTS or name == "start_hour_local":
            continue
        rows = donor if name in KINEMATIC else pick
        out[name] = col(name, rows) * rng.lognormal(0.0, jitter, n)  # NaN stays NaN
    out["min_accel"] = col("min_accel", donor) * rng.lognormal(0.0, jitter, n)
    for name in COUNTS:
        if name not in src.column_names:
            continue
        base = np.nan_to_num(col(name, pick))
        scaled = np.maximum(1, np.rint(base * rng.lognormal(0.0, 1.5 * jitter, n)))
        appear = rng.random(n) < 0.01  # a rare false positive: 0 -> 1
        out[name] = np.where(base > 0, scaled, appear.astype(np.float64)).astype(np.int64)
    out["n_vehicles"] = sum(out[c] for c in ("n_cars", "n_trucks", "n_buses", "n_motorcycles"))
    hour = col("start_hour_local", pick) + rng.normal(0.0, 0.5, n)
    out["start_hour_local"] = np.mod(hour, 24.0)
    table = pa.table({k: pa.array(v) for k, v in out.items()})
    table = table.append_column("tags", src.column("tags").take(pick))
    table = table.append_column("is_night", src.column("is_night").take(pick))
    table = table.append_column("source_scene", src.column("scene_id").take(pick))
    table = table.append_column("log_id", src.column("log_id").take(pick))
    embedder = FeatureEmbedder()
    vectors = np.empty((n, embedder.dim), np.float32)
    step = 200_000
    for lo in range(0, n, step):
        vectors[lo : lo + step] = embedder.embed(table.slice(lo, step))
    vectors += rng.normal(0.0, noise, vectors.shape).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return table, vectors


def lift(vectors: np.ndarray, dim: int, noise: float, seed: int) -> np.ndarray:
    """The same scenes at width `dim`: a fixed random tanh layer of their vectors, plus noise
    of its own in `dim` dimensions (a wide encoder sees more than the 35 features), unit norm."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(0.0, 1.0, (vectors.shape[1], dim)).astype(np.float32)
    out = np.empty((len(vectors), dim), np.float32)
    for lo in range(0, len(vectors), 100_000):
        part = np.tanh(vectors[lo : lo + 100_000] @ weights)
        part += rng.normal(0.0, noise, part.shape).astype(np.float32)
        out[lo : lo + 100_000] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return out


def write_lake(
    root: Path, meta: pa.Table, vectors: np.ndarray, logs: pa.Table, rng, version: str
) -> Lake:
    shutil.rmtree(root, ignore_errors=True)
    lake = Lake(root)
    lake.write("logs", logs, name="logs")
    n, dim = vectors.shape
    ids = pa.array([f"bench-{i:08d}" for i in range(n)], pa.string())
    meta = meta.append_column("scene_id", ids)
    # the lake keeps its own columns only: the source scene stays in the bench's memory
    meta = meta.drop_columns([c for c in ("source_scene",) if c in meta.column_names])
    meta = meta.append_column("start_ns", pa.array(np.arange(n, dtype=np.int64) * 10**10))
    meta = meta.append_column("end_ns", pa.array(np.arange(1, n + 1, dtype=np.int64) * 10**10))
    step = 250_000
    for part, lo in enumerate(range(0, n, step)):
        chunk = meta.slice(lo, step)
        rows = chunk.num_rows
        offsets = pa.array(np.arange(0, rows * dim + 1, dim, dtype=np.int32))
        values = pa.array(vectors[lo : lo + rows].ravel(), pa.float32())
        chunk = chunk.append_column("embedding", pa.ListArray.from_arrays(offsets, values))
        chunk = chunk.append_column("embedding_version", pa.array([version] * rows, pa.string()))
        lake.write("scenes", chunk, name=f"part-{part:03d}")
    return lake


def resident_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def index_resident_mib(lake: Lake, queries: np.ndarray) -> float:
    """What loading the published index and searching it adds to this process's resident set."""
    gc.collect()
    before = resident_mib()
    fresh = mining_index.load_index(lake)
    for q in queries:
        fresh.search(q[None, :], K)
    grown = resident_mib() - before
    del fresh
    gc.collect()
    return grown


# -- exact search (numpy) -----------------------------------------------------------------------
def brute(queries: np.ndarray, vectors: np.ndarray, k: int, block: int = 64):
    """Exact top k rows and similarities, best first (numpy, blocks of queries)."""
    rows = np.empty((len(queries), k), np.int64)
    sims = np.empty((len(queries), k), np.float32)
    for lo in range(0, len(queries), block):
        s = queries[lo : lo + block] @ vectors.T
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        ts = np.take_along_axis(s, top, axis=1)
        order = np.argsort(-ts, axis=1)
        rows[lo : lo + block] = np.take_along_axis(top, order, axis=1)
        sims[lo : lo + block] = np.take_along_axis(ts, order, axis=1)
    return rows, sims


def brute_one(query: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    s = vectors @ query
    top = np.argpartition(-s, k - 1)[:k]
    return top[np.argsort(-s[top])]


def recall(found_rows: np.ndarray, queries, vectors, exact_sims: np.ndarray) -> np.ndarray:
    """Per query: share of the exact top k matched, counting ties at the k-th similarity."""
    out = np.empty(len(queries))
    for i, rows in enumerate(found_rows):
        rows = rows[rows >= 0]
        sims = vectors[rows] @ queries[i] if len(rows) else np.zeros(0)
        out[i] = min(1.0, np.sum(sims >= exact_sims[i, -1] - 1e-6) / exact_sims.shape[1])
    return out


def ms(values) -> tuple[float, float]:
    values = np.asarray(values) * 1e3
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def mark(ok: bool) -> str:
    return "[green]yes[/green]" if ok else "[red]NO[/red]"


# -- main ---------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="scenes in the lake")
    parser.add_argument("--out", type=Path, default=Path("bench/out/mining"))
    parser.add_argument("--logs", type=int, default=LOGS, help="generated source logs")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="length of each log")
    parser.add_argument("--queries", type=int, default=QUERIES, help="unfiltered queries")
    parser.add_argument("--filtered-queries", type=int, default=200, help="queries per filter")
    parser.add_argument("--baseline-queries", type=int, default=100, help="numpy single queries")
    parser.add_argument("--noise", type=float, default=NOISE, help="embedding noise per dim")
    parser.add_argument("--jitter", type=float, default=JITTER, help="feature lognormal sigma")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--dim", type=int, default=0, help="lift the embeddings to this width")
    parser.add_argument("--lift-noise", type=float, default=0.05, help="noise per wide dim")
    parser.add_argument("--kind", default="auto", help="index kind (auto, hnsw, ivfpq, ...)")
    args = parser.parse_args()
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    out = Console(width=170)

    src, logs = source_scenes(args.out, args.logs, args.seconds, 1000 + args.seed)
    log(f"{src.num_rows} real scenes from {logs.num_rows} logs")
    nq = args.queries
    log(f"expanding to {args.n:,} scenes + {nq} held-out queries ...")
    (meta, vectors), expand_s = timed(expand, src, args.n + nq, rng, args.noise, args.jitter)
    version = FeatureEmbedder.version
    if args.dim and args.dim != vectors.shape[1]:
        log(f"lifting to width {args.dim} ...")
        vectors = lift(vectors, args.dim, args.lift_noise, args.seed)
        version = f"bench-lift-v1-d{args.dim}"
    queries = np.ascontiguousarray(vectors[args.n :])
    query_meta = meta.slice(args.n)
    meta, vectors = meta.slice(0, args.n), np.ascontiguousarray(vectors[: args.n])
    log(f"expanded in {expand_s:.1f} s; writing the lake ...")
    lake_root = args.out / (f"lake-{args.n}" + (f"-d{args.dim}" if args.dim else ""))
    src_ids = np.asarray(meta.column("source_scene").to_pylist(), dtype=object)
    lake, write_s = timed(write_lake, lake_root, meta, vectors, logs, rng, version)
    del meta
    gc.collect()
    log(f"lake written in {write_s:.1f} s: {lake.root}")

    miner = mining.open(lake)
    catalog, load_s = timed(miner.catalog)
    assert catalog.count == args.n and np.array_equal(catalog.vectors, vectors), "catalog order"
    vectors = catalog.vectors  # one copy in memory
    log(f"catalog loaded in {load_s:.1f} s; building the index (kind={args.kind}) ...")
    index, build_s = timed(miner.build_index, args.kind)
    log(f"built {index.kind} in {build_s:.1f} s")
    index_mib = index_resident_mib(lake, vectors[:200])

    # -- exact ground truth and the numpy baseline ---------------------------------------------
    log("exact ground truth (numpy) ...")
    (gt_rows, gt_sims), gt_s = timed(brute, queries, vectors, K)
    base_n = min(args.baseline_queries, nq)
    base_times = []
    for q in queries[:base_n]:
        t0 = time.perf_counter()
        brute_one(q, vectors, K)
        base_times.append(time.perf_counter() - t0)
    base_p50, base_p99 = ms(base_times)

    # -- unfiltered: the API, FAISS alone, batched ---------------------------------------------
    log(f"unfiltered: {nq} single queries through Miner.similar ...")
    miner.similar(queries[0], k=K)  # warm: position rows, tail, caches
    api_times, api_rows = [], np.full((nq, K), -1, np.int64)
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        frame = miner.similar(q, k=K)
        api_times.append(time.perf_counter() - t0)
        api_rows[i, : len(frame)] = catalog.rows(frame["scene_id"])
    api_recall = recall(api_rows, queries, vectors, gt_sims)
    raw_times = []
    raw_rows = np.full((nq, K), -1, np.int64)
    to_rows = _search.position_rows(catalog, index)  # ivfpq orders positions by list
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        _, pos = index.search(q[None, :], K)
        raw_times.append(time.perf_counter() - t0)
        raw_rows[i] = np.where(pos[0] >= 0, to_rows[np.maximum(pos[0], 0)], -1)
    raw_recall = recall(raw_rows, queries, vectors, gt_sims)
    knn_times = []  # the search layer alone (mining.search.knn), without building a DataFrame
    for q in queries:
        t0 = time.perf_counter()
        _search.knn(catalog, index, q[None, :], K)
        knn_times.append(time.perf_counter() - t0)
    batch_runs = []
    for _ in range(3):
        _, batch_s = timed(index.search, queries, K)
        batch_runs.append(batch_s)
    batch_qps = nq / min(batch_runs)
    api_batch_runs = []  # the API's batch form: one index call for every query
    for _ in range(3):
        _, api_batch_s = timed(miner.similar, queries, K)
        api_batch_runs.append(api_batch_s)
    api_batch_qps = nq / min(api_batch_runs)
    numpy_qps = nq / gt_s

    # -- data description -----------------------------------------------------------------------
    q_src = np.asarray(query_meta.column("source_scene").to_pylist(), dtype=object)
    same_source = float(np.mean(src_ids[gt_rows] == q_src[:, None]))
    tag_keys = np.array(["|".join(sorted(t)) for t in src.column("tags").to_pylist()], dtype=object)
    data = Table(title=f"data: {args.n:,} scenes from {src.num_rows} real scenes (perturbed)")
    data.add_column("what")
    data.add_column("value", justify="right")
    data.add_row("source logs x seconds", f"{logs.num_rows} x {args.seconds:g}")
    data.add_row("real scenes / distinct tag sets", f"{src.num_rows} / {len(set(tag_keys))}")
    data.add_row("embedding", f"{catalog.version}, dim {catalog.dim}")
    data.add_row("perturbation", f"features x lognormal({args.jitter}), noise {args.noise}/dim")
    data.add_row(
        "query: cos sim to 1st / 10th exact neighbour",
        f"{np.mean(gt_sims[:, 0]):.4f} / {np.mean(gt_sims[:, -1]):.4f}",
    )
    data.add_row("exact top-10 from the query's own source scene", f"{same_source:.1%}")
    data.add_row(
        "expand / write lake / load catalog (s)", f"{expand_s:.1f} / {write_s:.1f} / {load_s:.1f}"
    )
    out.print(data)

    api_p50, api_p99 = ms(api_times)
    raw_p50, raw_p99 = ms(raw_times)
    table = Table(
        title=f"unfiltered k={K}, {nq} held-out queries, index kind={index.kind} "
        f"(auto, FLAT_MAX={mining.FLAT_MAX:,}) params={index.manifest['params']}"
    )
    for column in ("search", "p50 ms", "p99 ms", "QPS", "recall@10", "vs numpy p50"):
        table.add_column(column, justify="left" if column == "search" else "right")
    table.add_row(
        "numpy brute force, 1 query (baseline)",
        f"{base_p50:.2f}",
        f"{base_p99:.2f}",
        f"{1e3 / base_p50:,.0f}",
        "1.000",
        "1x",
    )
    table.add_row(f"numpy brute force, batch of {nq}", "", "", f"{numpy_qps:,.0f}", "1.000", "")
    table.add_row(
        "Miner.similar(vector, k=10)",
        f"{api_p50:.3f}",
        f"{api_p99:.3f}",
        f"{1e3 / api_p50:,.0f}",
        f"{api_recall.mean():.4f}",
        f"{base_p50 / api_p50:,.1f}x",
    )
    knn_p50, knn_p99 = ms(knn_times)
    table.add_row(
        "  of which mining.search.knn (no DataFrame)",
        f"{knn_p50:.3f}",
        f"{knn_p99:.3f}",
        f"{1e3 / knn_p50:,.0f}",
        "",
        f"{base_p50 / knn_p50:,.1f}x",
    )
    table.add_row(
        "Index.search (FAISS), 1 query",
        f"{raw_p50:.3f}",
        f"{raw_p99:.3f}",
        f"{1e3 / raw_p50:,.0f}",
        f"{raw_recall.mean():.4f}",
        f"{base_p50 / raw_p50:,.1f}x",
    )
    table.add_row(
        f"Miner.similar(batch of {nq} vectors, k=10)", "", "", f"{api_batch_qps:,.0f}", "", ""
    )
    table.add_row(
        f"Index.search (FAISS), batch of {nq}",
        "",
        "",
        f"{batch_qps:,.0f}",
        f"{raw_recall.mean():.4f}",
        f"{batch_qps / numpy_qps:,.1f}x (batch)",
    )
    out.print(table)

    # -- filtered ---------------------------------------------------------------------------------
    con = duckdb.connect()
    numbered = catalog.meta.append_column("_row", pa.array(np.arange(catalog.count)))
    con.register("scenes", numbered)

    def select(expr: str) -> np.ndarray:
        mask = np.zeros(catalog.count, bool)
        found = con.execute(f"SELECT _row FROM scenes WHERE ({expr})").fetchnumpy()["_row"]
        mask[np.asarray(found, np.int64)] = True
        return mask

    pool = {}
    for expr in CORRELATED_POOL:
        pool[expr] = select(expr).mean()
    speed = np.asarray(catalog.meta.column("max_speed").to_numpy(zero_copy_only=False))
    filters = []
    for target in (0.001, 0.01, 0.1, 0.5, 0.9):
        # a hash of the id: independent of the embedding, and a column every lake has
        filters.append(("independent", target, f"hash(scene_id) % 1000000 < {target * 1e6:.0f}"))
        usable = {e: f for e, f in pool.items() if f > 0}
        best = min(usable, key=lambda e: abs(np.log(usable[e] / target)))
        filters.append(("correlated (real)", target, best))
        cut = float(np.nanquantile(speed, 1 - target))
        filters.append(("correlated (quantile)", target, f"max_speed > {cut:.4f}"))
    fq = min(args.filtered_queries, nq)
    ftable = Table(
        title=f"filtered similar(vector, k={K}, where=...), {fq} queries per filter; p50/p99 of "
        "the whole call, then p50 of its stages: where = evaluating the filter (Miner._mask), "
        "knn = mining.search.knn with that mask; first = the filter's first call (evaluated, "
        "its vectors gathered)"
    )
    for column in (
        "filter",
        "where",
        "selectivity",
        "p50 ms",
        "p99 ms",
        "first ms",
        "where ms",
        "knn ms",
        "recall@10",
        "min recall",
        "short",
        "target met",
    ):
        ftable.add_column(column, justify="left" if column in ("filter", "where") else "right")
    misses = []
    worst_p50 = worst_first = 0.0
    p50_target = TARGET_FILTERED_P50_MS[35 if catalog.dim <= 35 else 768]
    for kind, _target, expr in filters:
        log(f"filtered: {expr} ...")
        mask = select(expr)
        allowed = np.flatnonzero(mask)
        sub = vectors[allowed]
        _, f_sims = brute(queries[:fq], sub, min(K, len(allowed)))
        times, rows = [], np.full((fq, K), -1, np.int64)
        for i, q in enumerate(queries[:fq]):
            t0 = time.perf_counter()
            frame = miner.similar(q, k=K, where=expr)
            times.append(time.perf_counter() - t0)
            rows[i, : len(frame)] = catalog.rows(frame["scene_id"])
        where_times, knn_times = [], []  # the two stages of similar(), timed apart
        for _ in range(20):
            t0 = time.perf_counter()
            api_mask = miner._mask(expr)
            where_times.append(time.perf_counter() - t0)
        assert np.array_equal(api_mask, mask), f"{expr}: the API's mask differs"
        for q in queries[:fq]:
            t0 = time.perf_counter()
            _search.knn(catalog, index, q[None, :], K, mask)
            knn_times.append(time.perf_counter() - t0)
        assert mask[rows[rows >= 0]].all(), f"{expr}: a result does not match the filter"
        short = int(((rows >= 0).sum(axis=1) < min(K, len(allowed))).sum())
        rec = recall(rows, queries[:fq], vectors, f_sims)
        p50, p99 = ms(times)
        ok = rec.mean() >= TARGET_FILTERED_RECALL and short == 0 and p50 <= p50_target
        if not ok:
            misses.append((expr, rec.mean()))
        worst_p50 = max(worst_p50, p50)
        worst_first = max(worst_first, times[0] * 1e3 - p50)
        ftable.add_row(
            kind,
            expr,
            f"{mask.mean():.2%}",
            f"{p50:.2f}",
            f"{p99:.2f}",
            f"{times[0] * 1e3:.1f}",
            f"{ms(where_times)[0]:.2f}",
            f"{ms(knn_times)[0]:.2f}",
            f"{rec.mean():.4f}",
            f"{rec.min():.1f}",
            str(short),
            mark(ok),
        )
    out.print(ftable)

    targets = Table(title=f"targets, n={args.n:,}")
    for column in ("target", "reached", "met"):
        targets.add_column(column, justify="left" if column == "target" else "right")
    targets.add_row(
        "recall@10 >= 0.95 unfiltered (API)",
        f"{api_recall.mean():.4f}",
        mark(api_recall.mean() >= TARGET_RECALL),
    )
    targets.add_row(
        f"API p50 within {TARGET_API_OVERHEAD_MS} ms of the index alone (API / index)",
        f"{api_p50:.3f} / {raw_p50:.3f}",
        mark(api_p50 - raw_p50 <= TARGET_API_OVERHEAD_MS),
    )
    targets.add_row(
        "p50 >= 100x faster than numpy (API / FAISS)",
        f"{base_p50 / api_p50:,.1f}x / {base_p50 / raw_p50:,.1f}x",
        mark(base_p50 / api_p50 >= TARGET_SPEEDUP),
    )
    targets.add_row(
        f"filtered recall@10 >= 0.99 and p50 <= {p50_target:g} ms at every selectivity",
        f"{len(filters) - len(misses)}/{len(filters)} filters (worst p50 {worst_p50:.2f} ms)",
        mark(not misses),
    )
    targets.add_row(
        f"a new `where` costs <= {TARGET_FIRST_EXTRA_MS:g} ms more than its p50 (worst)",
        f"{worst_first:.1f} ms",
        mark(worst_first <= TARGET_FIRST_EXTRA_MS),
    )
    targets.add_row("index resident (fresh load, 200 searches)", f"{index_mib:,.0f} MiB", "")
    targets.add_row("index build (s)", f"{build_s:.1f} ({index.kind})", "")
    out.print(targets)
    log(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
