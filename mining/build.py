"""The vector index, build side: shards planned, built and published in `<lake>/_index/`
(mining.index loads and searches what is published here).

A build streams the lake's `scenes` files in name order and cuts them into shards of at most
`SHARD_SIZE` vectors. Each shard is one FAISS index plus the scene ids at its positions, built
on its own from the rows it covers, so a build holds one shard in memory whatever the lake's
size, costs the same per shard (time linear in the lake), and can run shard by shard on the
workers of a Dask cluster.

Builds are incremental. Each shard records the file segments it was built from (file, stamp,
size, first row, rows). The next build keeps every full shard whose files are unchanged and
builds only the rest: new logs, the last partial shard, and shards whose files were rewritten.
So indexing a day's new logs costs that day, not the lake (`full=True` rebuilds everything).

`manifest.json` lists the shards with their files and parameters (embedding version, dim,
count, kind). Shard files are written under new names first, and the manifest after them, so
readers see a whole index at every moment. The manifest is republished after each shard of a
long build (`"complete": false` until the last), so a rerun after a crash keeps the shards
already done; scenes of shards not yet rebuilt are searched exactly meanwhile. Files no
manifest names are removed once the build is complete.

>>> choose_kind(10_000), choose_kind(2_000_000)
('flat', 'hnsw')
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel import console
from flywheel.errors import InputError, LakeError
from flywheel.lake import Lake, resolve
from mining.catalog import vectors_of
from mining.index import HNSW_EF_SEARCH, INDEX_DIR, MANIFEST, Index, load_index, read_manifest

FORMAT = 2
KINDS = ("auto", "flat", "ivf", "hnsw", "ivfpq")
# Exact search stays under ~0.5 ms per query up to 50k vectors here and jumps to ~14 ms at
# 100k (the scan leaves the cache); HNSW answers in ~0.05 ms with recall ~1.0 and builds at
# ~15k vectors/s. So: exact while it costs under a millisecond, HNSW beyond.
FLAT_MAX = 50_000
# Vectors per shard. An HNSW search costs ~0.1 ms per shard almost whatever its size, so fewer,
# larger shards answer faster: at 1M scenes, 4 shards of 250k took 0.42 ms per query against
# 0.12 ms for one shard (bench/mining.py). A shard of 1M builds in ~30-50 s on 2 threads here
# and holds ~0.5 GB; beyond it the build grows linearly, shard by shard (bench/scale.py).
SHARD_SIZE = 1_000_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
READ_BATCH = 65_536  # rows per read of a scenes file while building a shard
# ivfpq: ~4·sqrt(n) lists, probed 1/16 of them (as ivf); PQ codes of one byte per
# PQ_SUBDIM dimensions, at most PQ_MAX_M bytes. At 1M scenes of dim 35 with re-ranking,
# 2-dim subvectors (18 bytes) gave recall@10 0.985-0.998, 4-dim (9 bytes) 0.80, 5-dim 0.68.
# At 768 dims (bench/mining.py --dim 768, 100k scenes) 64 bytes (12-dim subvectors) gave
# recall@10 0.990 re-ranking 200 and 0.936 on harder held-out queries; 128 bytes gave 1.000 at
# 0.3 ms more. So PQ_MAX_M caps a code at 128 bytes (4-8-dim subvectors at 512-1024 dims).
PQ_SUBDIM = 2
PQ_MAX_M = 128
PQ_BITS = 8
PQ_TRAIN_PER_LIST = 64  # training sample per list (FAISS warns below 39)
PQ_ITERATIONS = 10  # k-means iterations of the PQ codebooks, as of the lists (FAISS: 25)
# shards with fewer vectors than PQ needs to train 2**PQ_BITS centroids are flat (exact)
PQ_MIN_TRAIN = 39 * 2**PQ_BITS
VECTORS_DTYPE = "float32"  # of the re-rank file (float16 halves it; bench/index_disk.py)


def choose_kind(count: int, kind: str = "auto") -> str:
    """The concrete index kind for `count` vectors (`auto` resolves by size)."""
    if kind not in KINDS:
        raise InputError(f"index kind {kind!r} is not one of {', '.join(KINDS)}")
    if kind != "auto":
        return kind
    return "flat" if count <= FLAT_MAX else "hnsw"


def build_index(
    lake: str | os.PathLike | Lake | None = None,
    kind: str = "auto",
    *,
    full: bool = False,
    shard_size: int | None = None,
    scheduler: str | None = None,
    reuse: Index | None = None,
) -> Index:
    """Build (or bring up to date) the lake's index, publish it atomically, and load it
    (taking the shards it still holds from `reuse`, see `load_index`).

    >>> build_index(lake, kind="auto").kind
    'flat'
    """
    target = resolve(lake)
    publish_index(target, kind, full=full, shard_size=shard_size, scheduler=scheduler)
    return load_index(target, reuse=reuse)


def refresh(lake: str | os.PathLike | Lake | None = None) -> Index | None:
    """Bring the lake's index, if it has one, up to date with its scenes (the kind it was
    asked for; only shards whose files changed are rebuilt): after rows were deleted (a
    purge), its searches then give what a full rebuild gives. None when there is no index."""
    target = resolve(lake)
    manifest = read_manifest(target)
    if manifest is None:
        return None
    kind = manifest.get("requested_kind") or manifest.get("kind") or "auto"
    return build_index(target, kind if kind in KINDS else "auto")


def publish_index(
    lake: str | os.PathLike | Lake | None = None,
    kind: str = "auto",
    *,
    full: bool = False,
    shard_size: int | None = None,
    scheduler: str | None = None,
) -> dict:
    """Build the shards the lake's index lacks and publish its new manifest, which is returned.

    Holds one shard in memory at a time (the index is not loaded: `build_index` does that).
    With `scheduler` ("tcp://host:port") each shard is a task on that Dask cluster, whose
    workers must see the lake (an object store or a shared folder).
    """
    target = resolve(lake)
    choose_kind(0, kind)  # an unknown kind fails before any work
    shard_size = SHARD_SIZE if shard_size is None else shard_size
    if shard_size < 1:
        raise InputError(f"shard size must be at least 1, not {shard_size}")
    started = time.perf_counter()
    with target.lock("index"):
        previous = None if full else _previous(target)
        if previous:  # a shard whose files are gone cannot be kept
            present = set(target.listdir(INDEX_DIR))
            previous["shards"] = [
                s for s in previous["shards"] if set(s["files"].values()) <= present
            ]
        files = scene_files(target, _known_rows(previous))
        concrete = choose_kind(sum(f["rows"] for f in files), kind)
        kept, todo = plan(files, previous, concrete, shard_size)
        stamp = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
        specs = [
            {"name": f"{stamp}-{i:04d}", "kind": concrete, "segments": segments}
            for i, segments in enumerate(todo)
        ]
        built: list[dict] = []

        def publish(complete: bool) -> dict:
            manifest = _new_manifest(target, kept + built, concrete, kind, len(kept))
            manifest["complete"] = complete
            manifest["build_seconds"] = round(time.perf_counter() - started, 3)
            if previous and _same(previous, manifest):
                # up to date: the published manifest stays, so readers keep their caches
                return {**previous, **{k: manifest[k] for k in RUN_KEYS if k != "built_at"}}
            # the manifest last: it names the new files, so readers switch to them at once
            target.write_text(f"{INDEX_DIR}/{MANIFEST}", json.dumps(manifest, indent=2) + "\n")
            return manifest

        for entry in _build_all(target, specs, scheduler):
            built.append(entry)
            if len(built) < len(specs):
                # publish each shard as it is done: a rerun after a crash keeps it (a scene of
                # a shard not yet built is searched exactly meanwhile, so none is missed)
                publish(complete=False)
        manifest = publish(complete=True)
        named = {MANIFEST} | {name for s in kept + built for name in s["files"].values()}
        for old in target.listdir(INDEX_DIR):  # earlier builds: no manifest names them any more
            if old not in named:
                target.delete(f"{INDEX_DIR}/{old}")
    return manifest


# what a manifest says about the run that wrote it rather than about the index
RUN_KEYS = ("built_at", "build_seconds", "shards_kept", "shards_built")


def _same(a: dict, b: dict) -> bool:
    """Whether two manifests describe the same index."""
    return {k: v for k, v in a.items() if k not in RUN_KEYS} == {
        k: v for k, v in b.items() if k not in RUN_KEYS
    }


# -- planning -------------------------------------------------------------------------------------
def scene_files(lake: Lake, known: dict[str, tuple] | None = None) -> list[dict]:
    """Every published `scenes` file: its path in the lake, stamp, size and row count.

    Row counts come from each file's Parquet footer, or from `known` ({file: (stamp, size,
    rows)}, what the last build saw) for files unchanged since: an incremental build over a
    lake of many files reads the footers of its new files only.

    Rows of logs not yet published are indexed too (their file is final once written); the
    search drops positions whose scene is not in the lake, and they appear once published.
    """
    out = []
    known = known or {}
    for name, stamp, size in lake.file_stats("scenes"):
        rel, stamp, size = lake.relative(name), str(stamp), int(size)
        seen = known.get(rel)
        if seen is not None and seen[:2] == (stamp, size):
            rows = seen[2]
        else:
            try:
                with lake.open(rel) as handle:  # the footer only
                    rows = pq.ParquetFile(handle).metadata.num_rows
            except FileNotFoundError:  # replaced or removed meanwhile
                continue
        out.append({"file": rel, "stamp": stamp, "size": size, "rows": rows})
    return out


def _known_rows(previous: dict | None) -> dict[str, tuple]:
    """{file: (stamp, size, rows)} of every file the shards of `previous` were built from."""
    return {
        s["file"]: (s["stamp"], s["size"], s["file_rows"])
        for shard in (previous or {}).get("shards", [])
        for s in shard.get("segments", [])
        if "file_rows" in s
    }


def plan(
    files: list[dict], previous: dict | None, kind: str, shard_size: int
) -> tuple[list[dict], list[list[dict]]]:
    """(shards of `previous` to keep, segments of each shard to build).

    A shard is kept when it is of `kind` and every file it was built from is unchanged; a
    partial shard (under `shard_size`) is kept only when there is nothing new to index, else
    its rows are cut again with the new ones, so small shards never pile up.
    """
    now = {f["file"]: f for f in files}

    def unchanged(shard: dict) -> bool:
        return (
            shard.get("kind") == kind
            and bool(shard.get("segments"))
            and all(
                s["file"] in now
                and (now[s["file"]]["stamp"], now[s["file"]]["size"]) == (s["stamp"], s["size"])
                for s in shard["segments"]
            )
        )

    kept = [s for s in (previous or {}).get("shards", []) if unchanged(s)]
    pool = _uncovered(files, kept)

    def rows(shard: dict) -> int:  # rows covered, blank ones included
        return sum(s["rows"] for s in shard["segments"])

    if pool and any(rows(s) < shard_size for s in kept):
        kept = [s for s in kept if rows(s) >= shard_size]
        pool = _uncovered(files, kept)
    return kept, _cut(pool, shard_size)


def _uncovered(files: list[dict], kept: list[dict]) -> list[dict]:
    """Row ranges of `files` no kept shard covers, in file order."""
    covered: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for shard in kept:
        for s in shard["segments"]:
            covered[s["file"]].append((s["start"], s["start"] + s["rows"]))
    out = []
    for f in files:
        at = 0
        for lo, hi in [*sorted(covered[f["file"]]), (f["rows"], f["rows"])]:
            if lo > at:
                out.append(_segment(f, at, lo - at))
            at = max(at, hi)
    return out


def _segment(f: dict, start: int, rows: int) -> dict:
    return {
        "file": f["file"],
        "stamp": f["stamp"],
        "size": f["size"],
        "file_rows": f["rows"],
        "start": start,
        "rows": rows,
    }


def _cut(pool: list[dict], shard_size: int) -> list[list[dict]]:
    """`pool`'s segments cut into shards of `shard_size` rows (the last one may be smaller)."""
    shards: list[list[dict]] = []
    current: list[dict] = []
    room = shard_size
    for segment in pool:
        start, rows = segment["start"], segment["rows"]
        while rows:
            take = min(rows, room)
            current.append({**segment, "start": start, "rows": take})
            start, rows, room = start + take, rows - take, room - take
            if room == 0:
                shards.append(current)
                current, room = [], shard_size
    if current:
        shards.append(current)
    return shards


def _previous(target: Lake) -> dict | None:
    """The published manifest, if it can be read (a damaged one is simply not reused)."""
    try:
        return read_manifest(target)
    except LakeError:
        return None


# -- building ------------------------------------------------------------------------------------
def _build_all(target: Lake, specs: list[dict], scheduler: str | None) -> Iterator[dict]:
    """Build each shard of `specs` (here, or one task each on the cluster); yield each entry
    as it is done."""
    if not specs:
        return
    rows = sum(s["rows"] for spec in specs for s in spec["segments"])
    description = f"index: {len(specs)} shard(s), {rows:,} scenes"
    with console.progress(len(specs), description) as advance:
        if scheduler is None:
            for done, spec in enumerate(specs, 1):
                entry = build_shard(target, spec)
                advance(1, _note(entry, done, len(specs)))
                yield entry
            return
        from distributed import as_completed

        from flywheel.cluster import client

        with client(scheduler) as connected:
            futures = connected.map(build_shard, [target] * len(specs), specs, pure=False)
            for done, future in enumerate(as_completed(futures), 1):
                entry = future.result()
                advance(1, _note(entry, done, len(specs)))
                yield entry


def _note(entry: dict, done: int, total: int) -> str | None:
    """A line per shard where there is no bar (logs, notebooks), for builds of several."""
    if total == 1:
        return None
    return f"shard {done}/{total}: {entry['count']:,} scenes in {entry['build_seconds']:.1f} s"


def build_shard(lake: Lake, spec: dict) -> dict:
    """Build one shard from its segments and write its two files; its manifest entry."""
    started = time.perf_counter()
    ids, vectors, version = _read_segments(lake, spec["segments"])
    dim = int(vectors.shape[1]) if len(ids) else 0
    directed = vectors.any(axis=1) if len(ids) else np.zeros(0, bool)
    blank = len(ids) - int(directed.sum())
    if blank:  # all-zero embeddings have no direction: never searched (mining.catalog.blank)
        ids = [i for i, keep in zip(ids, directed, strict=True) if keep]
        vectors = vectors[directed]
    files = {"index": f"{spec['name']}.faiss", "ids": f"{spec['name']}.ids.parquet"}
    if spec["kind"] == "ivfpq":
        faiss_index, params, order = _make_pq(vectors, dim)
        # positions in list order: the vectors a query's lists hold lie together on disk
        ids, stored = [ids[i] for i in order], vectors[order].astype(VECTORS_DTYPE)
        del vectors
        files["vectors"] = f"{spec['name']}.vectors.npy"
        lake.put(f"{INDEX_DIR}/{files['vectors']}", lambda p: _save_npy(p, stored))
        del stored
    else:
        faiss_index, params = _make(spec["kind"], vectors, dim)
        del vectors
    lake.put(f"{INDEX_DIR}/{files['index']}", lambda p: faiss.write_index(faiss_index, str(p)))
    table = pa.table({"scene_id": pa.array(ids, pa.string())})
    lake.put(f"{INDEX_DIR}/{files['ids']}", lambda p: pq.write_table(table, p))
    return {
        "files": files,
        "kind": spec["kind"],
        "count": len(ids),
        "blank": blank,
        "dim": dim,
        "embedding_version": version,
        "params": params,
        "segments": spec["segments"],
        "build_seconds": round(time.perf_counter() - started, 3),
    }


def _read_segments(lake: Lake, segments: list[dict]) -> tuple[list[str], np.ndarray, str | None]:
    """Scene ids, unit vectors and embedding version of the rows `segments` name."""
    tables = []
    for segment in segments:
        path = lake.get(segment["file"])
        if path is None:
            raise LakeError(f"{lake.location(segment['file'])} vanished during the index build")
        parquet = pq.ParquetFile(path)
        columns = [
            c
            for c in ("scene_id", "embedding", "embedding_version")
            if c in parquet.schema_arrow.names
        ]
        start, end, at = segment["start"], segment["start"] + segment["rows"], 0
        for batch in parquet.iter_batches(batch_size=READ_BATCH, columns=columns):
            lo, hi = max(start, at), min(end, at + batch.num_rows)
            if lo < hi:
                tables.append(pa.Table.from_batches([batch.slice(lo - at, hi - lo)]))
            at += batch.num_rows
            if at >= end:
                break
    if not tables:
        return [], np.zeros((0, 0), np.float32), None
    table = pa.concat_tables(tables, promote_options="default")
    versions = (
        sorted({v for v in table.column("embedding_version").to_pylist() if v is not None})
        if "embedding_version" in table.column_names
        else []
    )
    if len(versions) > 1:
        raise LakeError(_mixed_versions(lake, versions), versions=versions)
    return table.column("scene_id").to_pylist(), vectors_of(table), (versions or [None])[0]


def _mixed_versions(lake: Lake, versions: list[str]) -> str:
    return (
        f"the lake {lake.root} holds scenes of several embedding versions "
        f"({', '.join(versions)}); mining needs one: re-ingest every log with the same "
        "embedder (`flywheel ingest ... --force`)"
    )


def _new_manifest(target: Lake, shards: list[dict], kind: str, requested: str, kept: int) -> dict:
    versions = sorted({s["embedding_version"] for s in shards if s["embedding_version"]})
    if len(versions) > 1:
        raise LakeError(_mixed_versions(target, versions), versions=versions)
    dims = sorted({s["dim"] for s in shards if s["count"]})
    if len(dims) > 1:
        raise LakeError(
            f"scene embeddings in {target.root} have different lengths ({dims[0]} to "
            f"{dims[-1]}); re-ingest every log with the same embedder (`flywheel ingest ... "
            "--force`)"
        )
    log_ids = sorted(target.read("logs", ["log_id"]).column("log_id").to_pylist())
    count = sum(s["count"] for s in shards)
    return {
        "format": FORMAT,
        "kind": kind,
        "requested_kind": requested,
        "metric": "inner_product",
        "embedding_version": versions[0] if versions else None,
        "dim": dims[0] if dims else 0,
        "count": count,
        "params": shards[-1]["params"] if shards else {},
        "built_at": dt.datetime.now(dt.UTC).isoformat(),
        "build_seconds": None,
        "built_from": {
            "scenes": count,
            "logs": len(log_ids),
            "log_ids_sha256": hashlib.sha256("\n".join(log_ids).encode()).hexdigest(),
        },
        "shards_kept": kept,
        "shards_built": len(shards) - kept,
        "shards": shards,
    }


def _make(kind: str, vectors: np.ndarray, dim: int) -> tuple[Any, dict]:
    n = len(vectors)
    d = max(dim, 1)
    if kind == "flat" or n == 0:
        index = faiss.IndexFlatIP(d)
        params: dict = {}
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
        params = {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION, "efSearch": HNSW_EF_SEARCH}
    else:  # ivf: ~4·sqrt(n) lists, at least 39 training points per list (FAISS's minimum)
        nlist = int(max(1, min(4 * np.sqrt(n), n // 39)))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = vectors[rng.choice(n, min(n, 256 * nlist), replace=False)]
        index.train(np.ascontiguousarray(sample))
        index.nprobe = max(1, nlist // 16)
        params = {"nlist": nlist, "nprobe": int(index.nprobe)}
    if n:
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index, params


def _make_pq(vectors: np.ndarray, dim: int) -> tuple[Any, dict, np.ndarray]:
    """An IVF-PQ index over `vectors` (zero-padded to a multiple of the PQ's subquantizers;
    zeros change no inner product), its params, and the order its positions take: sorted by
    list, so a probed list's vectors are contiguous in the re-rank file."""
    n = len(vectors)
    m = max(1, min(PQ_MAX_M, -(-dim // PQ_SUBDIM)))
    pad = -dim % m
    x = np.pad(np.ascontiguousarray(vectors, dtype=np.float32), ((0, 0), (0, pad)))
    d = max(dim + pad, 1)
    if n < PQ_MIN_TRAIN:
        index = faiss.IndexFlatIP(d)
        if n:
            index.add(x)
        return index, {"pad": pad}, np.arange(n)
    nlist = int(max(1, min(4 * np.sqrt(n), n // PQ_TRAIN_PER_LIST)))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFPQ(quantizer, d, nlist, m, PQ_BITS, faiss.METRIC_INNER_PRODUCT)
    index.pq.cp.niter = PQ_ITERATIONS  # FAISS's 25 took 2.5x as long here
    rng = np.random.default_rng(0)
    sample = x[np.sort(rng.choice(n, min(n, PQ_TRAIN_PER_LIST * nlist), replace=False))]
    index.train(sample)
    del sample
    _, lists = quantizer.search(x, 1)
    order = np.argsort(lists.ravel(), kind="stable")
    x, lists = np.ascontiguousarray(x[order]), np.ascontiguousarray(lists.ravel()[order])
    # the lists are assigned already: add them as such rather than search the quantizer again
    index.add_core(n, faiss.swig_ptr(x), None, faiss.swig_ptr(lists))
    index.nprobe = max(1, nlist // 16)
    params = {
        "nlist": nlist,
        "nprobe": int(index.nprobe),
        "m": m,
        "nbits": PQ_BITS,
        "pad": pad,
        "trained_on": int(min(n, PQ_TRAIN_PER_LIST * nlist)),
        "vectors_dtype": VECTORS_DTYPE,
    }
    return index, params, order


def _save_npy(path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:  # np.save on a path would append ".npy" to it
        np.save(handle, array)
