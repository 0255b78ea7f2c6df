"""Flywheel's search beside its peers, on the same vectors and filters, in one run.

    env -u OPENBLAS_CORETYPE .venv/bin/python bench/peers.py [--n 1000000] [--queries 200]
        [--peers flywheel,faiss,hnswlib,usearch,lancedb,qdrant] [--out bench/out/peers]
        [--mining-out bench/out/mining]

The peers are the `bench` extra (`pip install -c constraints.txt -e '.[bench]'`).

Data: the lake and held-out queries of bench/mining.py (its defaults, rebuilt from its own
functions; a lake it already wrote under --mining-out is reused, and hard-linked into --out so
that Flywheel's index is built there and the original's is left alone). Filters: unfiltered;
`hash(scene_id) % 1000000 < N` at 1%, 10% and 50% (independent of the embedding); and
`max_speed > q99` at 1% (correlated with it). Flywheel gets the DuckDB `where`; each peer gets
the same rows expressed natively: the hash bucket and max_speed as an integer / float field.

Each peer runs in its own subprocess: the vectors and fields are loaded from .npy, the peak RSS
is reset (/proc/self/clear_refs), then the peer builds from that data at rest (Flywheel: from
its Parquet lake, index build and catalog load) and answers one query at a time. Memory is the
peak and the held RSS above the loaded data. Recall@10 is against exact numpy over the allowed
rows, counting ties at the 10th similarity (bench/mining.py's `recall`); a result outside the
filter counts as a miss.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# bench/mining.py is named like the package it measures: keep this folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import duckdb
import numpy as np
from rich.console import Console
from rich.table import Table

import mining
from flywheel.lake import Lake
from mining import build as _build
from mining import index as _index
from mining import search as _search

_MINING = Path(__file__).with_name("mining.py")
_spec = importlib.util.spec_from_file_location("bench_mining", _MINING)
assert _spec is not None and _spec.loader is not None
bm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bm)

K = 10
PEERS = ("flywheel", "faiss", "hnswlib", "usearch", "lancedb", "qdrant")
SLOW = {"qdrant": 50}  # local mode scans every point in Python/numpy: fewer queries at 1M
MIN_QUERIES = 20  # a filter's run stops at its time budget, but not before this many queries
err = Console(stderr=True)
log = bm.log


# -- data ---------------------------------------------------------------------------------------
def prepare(args: argparse.Namespace) -> Path:
    """The lake, vectors, held-out queries and filter fields of bench/mining.py, cached in
    `--out/data-N` as .npy files the workers load."""
    data = args.out / f"data-{args.n}"
    if (data / "filters.json").exists():
        return data
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(bm.SEED)
    src, logs = bm.source_scenes(args.mining_out, bm.LOGS, bm.SECONDS, 1000 + bm.SEED)
    log(f"expanding {src.num_rows} real scenes to {args.n:,} + {bm.QUERIES} held-out queries ...")
    meta, vectors = bm.expand(src, args.n + bm.QUERIES, rng, bm.NOISE, bm.JITTER)
    queries = np.ascontiguousarray(vectors[args.n :])
    original = args.mining_out / f"lake-{args.n}"
    if not (original / "scenes").exists():
        log(f"writing the lake {original} (as bench/mining.py does) ...")
        bm.write_lake(
            original,
            meta.slice(0, args.n),
            vectors[: args.n],
            logs,
            rng,
            bm.FeatureEmbedder.version,
        )
    del meta
    # Flywheel builds its index in a lake of its own: hard links to the same Parquet files
    lake_root = args.out / f"lake-{args.n}"
    for table in ("scenes", "logs"):
        (lake_root / table).mkdir(parents=True, exist_ok=True)
        for file in (original / table).glob("*.parquet"):
            if not (lake_root / table / file.name).exists():
                os.link(file, lake_root / table / file.name)
    miner = mining.open(Lake(lake_root))
    catalog = miner.catalog()
    # the same rng draws as bench/mining.py: its lake holds exactly the first N vectors
    assert np.array_equal(catalog.vectors, vectors[: args.n]), f"{original} is another lake"
    del vectors
    con = duckdb.connect()
    con.register("scenes", catalog.meta.select(["scene_id", "max_speed"]))
    bucket = con.sql("SELECT hash(scene_id) % 1000000 AS b FROM scenes").fetchnumpy()["b"]
    speed = np.asarray(catalog.meta.column("max_speed").to_numpy(), np.float64)
    np.save(data / "vectors.npy", catalog.vectors)
    np.save(data / "queries.npy", queries)
    np.save(data / "bucket.npy", np.asarray(bucket, np.int32))
    np.save(data / "max_speed.npy", speed)
    filters: list[dict[str, Any]] = [{"name": "unfiltered", "where": None}]
    for share in (0.01, 0.1, 0.5):
        value = int(share * 1e6)
        where = f"hash(scene_id) % 1000000 < {value}"
        field = {"field": "bucket", "op": "<", "value": value}
        filters.append({"name": f"{share:.0%} hash", "where": where, **field})
    cut = float(f"{np.quantile(speed, 0.99):.4f}")
    filters.append(
        {
            "name": "1% max_speed",
            "where": f"max_speed > {cut:.4f}",
            "field": "max_speed",
            "op": ">",
            "value": cut,
        }
    )
    fields = {"bucket": bucket, "max_speed": speed}
    for f in filters[1:]:  # the peers' masks are the rows Flywheel's own `where` selects
        assert np.array_equal(miner._mask(f["where"]), mask_of(fields, f)), f["where"]
    spec = {"n": args.n, "lake": str(lake_root.resolve()), "filters": filters}
    (data / "filters.json").write_text(json.dumps(spec, indent=1))
    return data


def mask_of(fields: dict[str, np.ndarray], f: dict[str, Any]) -> np.ndarray:
    column = fields[f["field"]]
    return column < f["value"] if f["op"] == "<" else column > f["value"]


class Data:
    """What every worker loads before its baseline RSS is taken."""

    def __init__(self, folder: Path) -> None:
        spec = json.loads((folder / "filters.json").read_text())
        self.n: int = spec["n"]
        self.lake = Path(spec["lake"])
        self.filters: list[dict[str, Any]] = spec["filters"]
        self.vectors = np.load(folder / "vectors.npy")
        self.queries = np.load(folder / "queries.npy")
        self.fields = {f: np.load(folder / f"{f}.npy") for f in ("bucket", "max_speed")}
        self.scratch = folder.parent / f"scratch-{self.n}"
        self.dim = self.vectors.shape[1]


# -- the peers: build in __init__, express a filter natively in plan(), answer in search() -------
class Flywheel:
    settings = (
        f"mining.open(lake).similar(v, k=10, where=W); index kind=auto (HNSW M={_build.HNSW_M}, "
        f"efConstruction={_build.HNSW_EF_CONSTRUCTION}, efSearch={_index.HNSW_EF_SEARCH} above "
        f"{_build.FLAT_MAX:,} scenes, else exact); where = DuckDB, exact scan when <= "
        f"{_search.EXACT_FILTERED_MAX:,} rows pass, else FAISS IDSelector with efSearch widened"
    )

    def __init__(self, data: Data) -> None:
        self.miner = mining.open(Lake(data.lake))
        self.miner.build_index("auto", full=True)
        self.miner.similar(data.queries[-1], k=K)  # loads the catalog: part of being ready

    def plan(self, f: dict[str, Any] | None) -> Any:
        return None if f is None else f["where"]

    def search(self, q: np.ndarray, plan: Any) -> Any:
        return self.miner.similar(q, k=K, where=plan)["scene_id"]

    def rows(self, found: Any) -> np.ndarray:
        return np.asarray([int(s[6:]) for s in found], np.int64)  # bench-00000042 -> row 42


class Faiss:
    # FAISS's own HNSW (its wiki: "HNSW32" is the usual choice) with Flywheel's parameters, so
    # the difference is Flywheel's layer; filters through FAISS's native IDSelectorBitmap
    settings = (
        "IndexHNSWFlat(M=32, inner product), efConstruction=80, efSearch=64; filter: "
        "SearchParametersHNSW(sel=IDSelectorBitmap), efSearch 64"
    )

    def __init__(self, data: Data) -> None:
        import faiss

        self.faiss = faiss
        self.index = faiss.IndexHNSWFlat(data.dim, 32, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = 80
        self.index.add(data.vectors)
        self.data = data

    def plan(self, f: dict[str, Any] | None) -> Any:
        faiss = self.faiss
        if f is None:
            return (faiss.SearchParametersHNSW(efSearch=64),)
        bits = np.packbits(mask_of(self.data.fields, f), bitorder="little")
        selector = faiss.IDSelectorBitmap(self.data.n, faiss.swig_ptr(bits))
        return faiss.SearchParametersHNSW(sel=selector, efSearch=64), selector, bits  # kept alive

    def search(self, q: np.ndarray, plan: Any) -> Any:
        return self.index.search(q[None, :], K, params=plan[0])[1][0]

    def rows(self, found: Any) -> np.ndarray:
        return np.asarray(found, np.int64)


class Hnswlib:
    # hnswlib's README example and ALGO_PARAMS.md: M=16, ef_construction=200; ef raised from
    # the README's 50 to 128 for recall@10 near 0.99. Its filter is a Python callable over ids
    # (called for each candidate, under the GIL: num_threads=1, as its README says)
    M, EF_CONSTRUCTION, EF = 16, 200, 128
    settings = f"space=ip, M={M}, ef_construction={EF_CONSTRUCTION}, ef={EF}; filter=callable"

    def __init__(self, data: Data) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=data.dim)
        self.index.init_index(max_elements=data.n, ef_construction=self.EF_CONSTRUCTION, M=self.M)
        self.index.add_items(data.vectors, np.arange(data.n))
        self.index.set_ef(self.EF)
        self.data = data

    def plan(self, f: dict[str, Any] | None) -> Callable[[int], bool] | None:
        if f is None:
            return None
        return set(np.flatnonzero(mask_of(self.data.fields, f)).tolist()).__contains__

    def search(self, q: np.ndarray, plan: Any) -> Any:
        try:
            return self.index.knn_query(q, k=K, num_threads=1, filter=plan)[0][0]
        except RuntimeError:  # fewer than k allowed ids reached: counted as short
            return np.zeros(0, np.int64)

    def rows(self, found: Any) -> np.ndarray:
        return np.asarray(found, np.int64)


class Usearch:
    # usearch's defaults: metric cos, connectivity 16, expansion_add 128, expansion_search 64,
    # dtype bf16. Its Python search takes no filter or predicate (2.26: search(vectors, count,
    # radius, threads, exact, ...)): filtered rows over-fetch k/selectivity x 2 neighbours and
    # keep the allowed ones, x4 again while short, up to OVERFETCH_MAX
    OVERFETCH_MAX = 65_536
    settings = "defaults (cos, connectivity 16, expansion 128/64, bf16); filter: over-fetch"

    def __init__(self, data: Data) -> None:
        from usearch.index import Index

        self.index = Index(ndim=data.dim, metric="cos")
        self.index.add(np.arange(data.n), data.vectors)
        self.data = data

    def plan(self, f: dict[str, Any] | None) -> Any:
        if f is None:
            return None
        mask = mask_of(self.data.fields, f)
        return mask, math.ceil(2 * K / max(mask.mean(), 1e-6))

    def search(self, q: np.ndarray, plan: Any) -> Any:
        if plan is None:
            return self.index.search(q, K).keys
        mask, count = plan
        while True:
            keys = self.index.search(q, min(count, self.data.n)).keys
            keys = keys[mask[keys]]
            if len(keys) >= K or count >= min(self.OVERFETCH_MAX, self.data.n):
                return keys[:K]
            count *= 4

    def rows(self, found: Any) -> np.ndarray:
        return np.asarray(found, np.int64)


class LanceDB:
    # LanceDB's default vector index, IVF_PQ (num_partitions its default); num_sub_vectors=7:
    # its default is dim/16 or dim/8 and else 1, and 35 divides by neither; refine_factor=10
    # re-ranks 100 candidates on the full vectors; its docs' advice for filtered search: a
    # scalar (BTree) index on each filtered column and `prefilter=True`
    REFINE = 10
    settings = (
        "IVF_PQ(cosine, num_sub_vectors=7, default partitions), nprobes default, refine_factor="
        f"{REFINE}; BTree on bucket, max_speed; where(SQL, prefilter=True)"
    )

    def __init__(self, data: Data) -> None:
        # lance warns at every query that select() will stop adding `_distance` one day
        os.environ.setdefault("LANCEDB_LOG", "error")
        import lancedb
        import pyarrow as pa
        from lancedb.index import BTree, IvfPq

        db = lancedb.connect(data.scratch / "lancedb")
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(data.vectors.ravel()), data.dim)
        columns = {"id": pa.array(np.arange(data.n)), "vector": vectors}
        columns |= {name: pa.array(values) for name, values in data.fields.items()}
        self.table = db.create_table("scenes", pa.table(columns), mode="overwrite")
        self.table.create_index("vector", config=IvfPq(distance_type="cosine", num_sub_vectors=7))
        for name in data.fields:
            self.table.create_index(name, config=BTree())

    def plan(self, f: dict[str, Any] | None) -> str | None:
        return None if f is None else f"{f['field']} {f['op']} {f['value']!r}"

    def search(self, q: np.ndarray, plan: Any) -> Any:
        query = self.table.search(q).limit(K).refine_factor(self.REFINE).select(["id"])
        if plan is not None:
            query = query.where(plan, prefilter=True)
        return query.to_arrow()["id"]

    def rows(self, found: Any) -> np.ndarray:
        return np.asarray(found.to_numpy(), np.int64)


class Qdrant:
    # qdrant-client's local mode (QdrantClient(":memory:")), collection defaults (cosine; the
    # server's HNSW defaults m=16, ef_construct=100 do not apply: local mode scores every point
    # with numpy and evaluates payload filters in Python, and warns above 20,000 points)
    settings = "local mode ':memory:' (brute-force numpy, no HNSW); payload Range filter"
    BATCH = 10_000

    def __init__(self, data: Data) -> None:
        from qdrant_client import QdrantClient, models

        self.models = models
        self.client = QdrantClient(":memory:")
        self.client.create_collection(
            "scenes", vectors_config=models.VectorParams(size=data.dim, distance="Cosine")
        )
        bucket, speed = data.fields["bucket"].tolist(), data.fields["max_speed"].tolist()
        for lo in range(0, data.n, self.BATCH):
            hi = min(lo + self.BATCH, data.n)
            payloads = [{"bucket": bucket[i], "max_speed": speed[i]} for i in range(lo, hi)]
            batch = models.Batch(
                ids=list(range(lo, hi)), vectors=data.vectors[lo:hi].tolist(), payloads=payloads
            )
            self.client.upsert("scenes", points=batch, wait=True)

    def plan(self, f: dict[str, Any] | None) -> Any:
        if f is None:
            return None
        models = self.models
        bound = models.Range(lt=f["value"]) if f["op"] == "<" else models.Range(gt=f["value"])
        return models.Filter(must=[models.FieldCondition(key=f["field"], range=bound)])

    def search(self, q: np.ndarray, plan: Any) -> Any:
        return self.client.query_points("scenes", query=q, query_filter=plan, limit=K).points

    def rows(self, found: Any) -> np.ndarray:
        return np.asarray([p.id for p in found], np.int64)


CLASSES: dict[str, Any] = {
    "flywheel": Flywheel,
    "faiss": Faiss,
    "hnswlib": Hnswlib,
    "usearch": Usearch,
    "lancedb": LanceDB,
    "qdrant": Qdrant,
}


# -- a worker: one peer in its own process ------------------------------------------------------
def status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def worker(args: argparse.Namespace) -> None:
    data = Data(args.data)
    nq = min(args.queries, SLOW.get(args.worker, args.queries))
    assert nq < len(data.queries), "the last held-out query warms up, unmeasured"
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS from here: the data is loaded
    base = status_kb("VmRSS")
    log(f"{args.worker}: building over {data.n:,} vectors ...")
    started = time.perf_counter()
    peer = CLASSES[args.worker](data)
    build_s = time.perf_counter() - started
    log(f"{args.worker}: built in {build_s:.1f} s")
    out: dict[str, Any] = {"build_s": build_s, "settings": peer.settings, "filters": {}}
    arrays = {}
    for f in data.filters:
        plan = peer.plan(f if f["where"] else None)
        peer.search(data.queries[-1], plan)  # warm-up: the filter's first call is not timed
        times, rows = [], np.full((nq, K), -1, np.int64)
        deadline = time.perf_counter() + args.budget
        for i in range(nq):
            t0 = time.perf_counter()
            found = peer.search(data.queries[i], plan)
            times.append(time.perf_counter() - t0)
            got = peer.rows(found)[:K]
            rows[i, : len(got)] = got
            if time.perf_counter() > deadline and i + 1 >= MIN_QUERIES:
                break
        done = len(times)
        log(f"{args.worker}: {f['name']}: {done} queries, p50 {np.median(times) * 1e3:.2f} ms")
        arrays[f"times:{f['name']}"] = np.asarray(times)
        arrays[f"rows:{f['name']}"] = rows[:done]
    out["held_mb"] = (status_kb("VmRSS") - base) / 1024
    out["peak_mb"] = (status_kb("VmHWM") - base) / 1024
    np.savez(args.result.with_suffix(".npz"), **arrays)
    args.result.write_text(json.dumps(out))


# -- the parent: ground truth, the workers, the table --------------------------------------------
def run_peer(args: argparse.Namespace, name: str, data: Path) -> dict[str, Any] | None:
    result = args.out / f"result-{args.n}-{name}.json"
    if args.reuse and result.exists():
        log(f"{name}: reusing {result}")
        return load_result(result)
    result.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--worker", name, "--data", str(data)]
    command += ["--queries", str(args.queries), "--budget", str(args.budget)]
    command += ["--result", str(result)]
    started = time.perf_counter()
    code = subprocess.run(command).returncode
    log(f"{name}: worker exited {code} after {time.perf_counter() - started:.0f} s")
    if code != 0 or not result.exists():
        return None
    return load_result(result)


def load_result(result: Path) -> dict[str, Any]:
    out = json.loads(result.read_text())
    with np.load(result.with_suffix(".npz")) as arrays:
        out["arrays"] = dict(arrays)
    return out


def ratio(x: float) -> str:
    return f"{x:,.0f}x" if x >= 100 else f"{x:.3g}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="scenes in the lake")
    parser.add_argument("--queries", type=int, default=200, help="held-out queries per filter")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma list of " + ",".join(PEERS))
    parser.add_argument("--out", type=Path, default=Path("bench/out/peers"))
    parser.add_argument("--mining-out", type=Path, default=Path("bench/out/mining"))
    parser.add_argument("--budget", type=float, default=300.0, help="max seconds per filter")
    parser.add_argument(
        "--reuse", action="store_true", help="print the table from the last run's worker results"
    )
    parser.add_argument("--worker", choices=PEERS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = set(peers) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers {sorted(unknown)}; choose from {','.join(PEERS)}")
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    folder = prepare(args)
    spec = json.loads((folder / "filters.json").read_text())
    vectors, queries = np.load(folder / "vectors.npy"), np.load(folder / "queries.npy")
    fields = {f: np.load(folder / f"{f}.npy") for f in ("bucket", "max_speed")}
    nq = args.queries
    log(f"exact ground truth (numpy) for {nq} queries x {len(spec['filters'])} filters ...")
    truth = {}
    for f in spec["filters"]:
        mask = np.ones(len(vectors), bool) if f["where"] is None else mask_of(fields, f)
        _, sims = bm.brute(queries[:nq], vectors[mask], K)
        truth[f["name"]] = (mask, sims)

    results = {name: run_peer(args, name, folder) for name in peers}
    table = Table(
        title=f"k={K}, {args.n:,} scenes (bench/mining.py's lake, dim {vectors.shape[1]}), one "
        "query at a time; p50 ÷ Flywheel > 1 = slower than Flywheel",
        caption="\n".join(
            f"{name}: {r['settings']}" if r else f"{name}: FAILED (see its log)"
            for name, r in results.items()
        ),
        caption_justify="left",
    )
    for column in (
        "peer",
        "filter",
        "passes",
        "build s",
        "peak MB",
        "held MB",
        "queries",
        "p50 ms",
        "p99 ms",
        "recall@10",
        "short",
        "p50 ÷ Flywheel",
        "recall − Flywheel",
    ):
        table.add_column(column, justify="left" if column in ("peer", "filter") else "right")
    reference: dict[str, tuple[float, float]] = {}
    summary = {}
    for name, r in results.items():
        if r is None:
            table.add_row(name, "failed", *[""] * 11)
            continue
        for j, f in enumerate(spec["filters"]):
            mask, sims = truth[f["name"]]
            times = r["arrays"][f"times:{f['name']}"]
            rows = r["arrays"][f"rows:{f['name']}"].copy()
            done = len(times)
            rows[(rows >= 0) & ~mask[np.maximum(rows, 0)]] = -1  # outside the filter: a miss
            rec = float(bm.recall(rows, queries[:done], vectors, sims[:done]).mean())
            short = int(((rows >= 0).sum(axis=1) < K).sum())
            p50, p99 = bm.ms(times)
            if name == "flywheel":
                reference[f["name"]] = (p50, rec)
            ref = reference.get(f["name"])
            table.add_row(
                name if j == 0 else "",
                f["name"],
                f"{mask.mean():.1%}",
                f"{r['build_s']:.1f}" if j == 0 else "",
                f"{r['peak_mb']:,.0f}" if j == 0 else "",
                f"{r['held_mb']:,.0f}" if j == 0 else "",
                f"{done}" + ("" if done == nq else f" of {nq}"),
                f"{p50:.3f}",
                f"{p99:.3f}",
                f"{rec:.4f}",
                str(short),
                ratio(p50 / ref[0]) if ref else "",
                f"{rec - ref[1]:+.4f}" if ref else "",
                end_section=j == len(spec["filters"]) - 1,
            )
            summary[f"{name}:{f['name']}"] = {"p50_ms": p50, "p99_ms": p99, "recall": rec}
            summary[f"{name}:{f['name']}"] |= {"queries": done, "short": short}
        summary[name] = {k: r[k] for k in ("build_s", "peak_mb", "held_mb", "settings")}
    Console(width=200).print(table)
    (args.out / f"summary-{args.n}.json").write_text(json.dumps(summary, indent=1))
    log(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
