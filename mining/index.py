"""The vector index, read side: the published index in `<lake>/_index/`, loaded and searched.

The index is FAISS over `scenes.embedding`, in fixed-size shards (planned, built and published
by mining.build). Each shard is one FAISS index plus the scene ids at its positions; a query
fans out to the shards and merges their top k.

`manifest.json` lists the shards with their files and parameters (embedding version, dim,
count, kind). A build writes shard files under new names first and the manifest after them, so
readers see a whole index at every moment, and a loaded index can keep the shards a newer
manifest still names (`load_index(reuse=...)`).

Kinds (inner product on unit vectors, i.e. cosine similarity):

- ``flat``: exact. Measured on this 2-core machine (dim 35, faiss 1.15, one query, k=10):
  p50 0.09 ms at 10k vectors, 0.5 ms at 50k, 14 ms at 100k, 16 ms at 200k, 21 ms at 500k.
- ``hnsw``: approximate graph search (M=32, efConstruction=80, efSearch=64). Same machine:
  build 2.7 s / 50k, 6 s / 100k, 43 s / 500k; p50 0.03-0.11 ms; recall@10 0.995-1.0.
- ``ivf``: inverted lists (nlist ~ 4·sqrt(n) per shard, nprobe = nlist/16): faster to build
  than HNSW, slower to query; for lakes where build time matters more than latency.
- ``ivfpq``: inverted lists of product-quantised codes, for lakes beyond memory. Each shard
  keeps its FAISS index and its vectors (`<shard>.vectors.npy`) on disk and memory-maps both,
  so a process holds what its searches touch, not the lake. A shard's top `rerank_count(k)`
  PQ candidates are re-ranked exactly against its vectors (the similarities returned are exact
  cosine), shards are searched in parallel threads and merged (docs/scaling.md, 10M scenes).
- ``auto``: flat up to FLAT_MAX scenes, HNSW beyond (see FLAT_MAX for why).

Scenes ingested after a build are not in the index; the search covers them exactly
(mining.search), so nothing is missed. An index of another embedding version is rebuilt.
"""

from __future__ import annotations

import json
import mmap
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel import console
from flywheel.errors import LakeError
from flywheel.lake import Lake, resolve

INDEX_DIR = "_index"
MANIFEST = "manifest.json"
HNSW_EF_SEARCH = 64
# A filter passing a fraction f of a shard needs ~1/f more search effort to find k of its
# scenes; floor of 8 (efSearch 512): with only 1/f, filters passing ~50% of 1M scenes returned
# k matches that were not the nearest (recall 0.96-0.99, bench/mining.py).
SELECTOR_MIN_WIDEN = 8.0
SELECTOR_MAX_WIDEN = 64.0
# ivfpq: PQ candidates per shard re-ranked exactly: k * RERANK_FACTOR at codes of 2 dims per
# byte, more for coarser codes, within [RERANK_MIN, RERANK_MAX]. At 1M scenes (dim 35, 18-byte
# codes, nprobe = nlist/16) 100 candidates gave recall@10 0.985 and 400 0.998 for +0.05 ms; at
# 10M in shards of 2M, 200 gave 1.000 (docs/scaling.md). At dim 768 (128-byte codes, 6 dims per
# byte) 200 gave 0.84, 500 0.955 and 1,000 0.997 at 3.7-6.6 ms (bench/mining.py --dim 768,
# neighbours within 0.001 of each other in cosine): hence the factor grows as (dims/2)^1.5.
# The re-rank reads one row of the vectors file per candidate.
RERANK_FACTOR = 20
RERANK_MIN = 200
RERANK_MAX = 2_000
RERANK_BLOCK = 8_000_000  # floats of candidate vectors gathered at once (32 MB)
# ivfpq shard files are memory-mapped: the FAISS lists and the vectors file. IO_FLAG_MMAP_IFC
# maps the lists in place as ArrayInvertedLists; IO_FLAG_MMAP's OnDiskInvertedLists was 6-10x
# slower to search here (1.2 against 0.19 ms per query and 50k-vector shard), as resident.
MMAP_FLAGS = faiss.IO_FLAG_MMAP_IFC


def rerank_count(k: int, dims_per_byte: float = 2.0) -> int:
    """How many PQ candidates an ivfpq shard re-ranks exactly for a top `k`, with codes of
    `dims_per_byte` dimensions per byte."""
    factor = RERANK_FACTOR * max(1.0, dims_per_byte / 2.0) ** 1.5
    return int(max(min(k * factor, RERANK_MAX), RERANK_MIN, k))


@dataclass
class Shard:
    """One FAISS index over `count` vectors, at global positions `start` ... `start+count-1`,
    with the scene id at each of its positions (an Arrow array: 10M ids as Python strings
    would take ~0.7 GB) and, for ivfpq, its memory-mapped vectors for the exact re-rank."""

    faiss_index: Any
    start: int
    entry: dict  # the shard's manifest entry
    ids: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))
    vectors: np.ndarray | None = None

    @property
    def count(self) -> int:
        return int(self.entry["count"])

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        fraction: float | None = None,
        rough: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top `k` (similarities, local positions); `allowed` (bool per position) is applied
        inside FAISS as an ID selector, with the search effort widened to match: by
        `fraction` (the share of the query's neighbourhood that is allowed, when the caller
        measured it), else by the share of positions allowed."""
        kwargs: dict[str, Any] = {}
        widen = 1.0
        if allowed is not None:
            bitmap = np.packbits(allowed, bitorder="little")
            kwargs["sel"] = faiss.IDSelectorBitmap(bitmap)
            if fraction is None:
                fraction = max(float(allowed.mean()), 1e-6)
                widen = min(SELECTOR_MAX_WIDEN, max(SELECTOR_MIN_WIDEN, 1.0 / fraction))
            else:
                widen = min(SELECTOR_MAX_WIDEN, 2.0 / max(fraction, 1e-6))
        kind = self.entry["kind"]
        if kind == "ivfpq":
            if allowed is not None and "nlist" in self.entry["params"]:
                # lists probed find the neighbours as without a filter; the allowed share of
                # them must still fill the re-rank: widen by candidates, not by 2/fraction
                info = self.entry["params"]
                probed = max(1, info["nprobe"]) * self.count / max(1, info["nlist"])
                wanted = rerank_count(k, self.dims_per_byte)
                widen = max(1.0, wanted / (probed * max(fraction or 0.0, 1e-6)))
            return self._search_pq(queries, k, kwargs, widen, rough)
        if kind == "hnsw":
            ef = int(min(4096, max(HNSW_EF_SEARCH, 2 * k) * widen))
            params = faiss.SearchParametersHNSW(efSearch=ef, **kwargs)
        elif kind == "ivf":
            nlist = self.faiss_index.nlist
            nprobe = int(min(nlist, max(1, self.entry["params"]["nprobe"]) * widen))
            params = faiss.SearchParametersIVF(nprobe=nprobe, **kwargs)
        else:
            params = faiss.SearchParameters(**kwargs) if kwargs else None
        return self.faiss_index.search(queries, k, params=params)

    @property
    def dims_per_byte(self) -> float:
        """How coarse an ivfpq shard's codes are: dimensions (padded) per code byte."""
        info = self.entry["params"]
        if "m" not in info:
            return 2.0
        return (
            (int(self.entry["dim"]) + int(info.get("pad", 0)))
            / int(info["m"])
            * 8
            / int(info.get("nbits", 8))
        )

    def _search_pq(
        self, queries: np.ndarray, k: int, kwargs: dict, widen: float, rough: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """PQ candidates, re-ranked by their exact similarity (vectors read from the file);
        `rough`: the PQ's own top k, not re-ranked (similarities approximate)."""
        info = self.entry["params"]
        if "nlist" in info:
            if rough:  # an eighth of the lists: enough to see what the neighbourhood holds
                nprobe = max(1, int(info["nprobe"]) // 8)
            else:
                nprobe = int(min(info["nlist"], max(1, info["nprobe"]) * widen))
            params = faiss.SearchParametersIVF(nprobe=nprobe, **kwargs)
        else:  # a shard too small to train PQ on is a flat index
            params = faiss.SearchParameters(**kwargs) if kwargs else None
        sims = np.full((len(queries), k), -np.inf, dtype=np.float32)
        positions = np.full((len(queries), k), -1, dtype=np.int64)
        want = min(self.count, rerank_count(k, self.dims_per_byte))
        if want == 0 or k == 0:
            return sims, positions
        padded = np.pad(queries, ((0, 0), (0, info.get("pad", 0))))
        if rough:
            return self.faiss_index.search(padded, k, params=params)
        assert self.vectors is not None, "an ivfpq shard has its vectors"
        _, candidates = self.faiss_index.search(padded, want, params=params)
        step = max(1, RERANK_BLOCK // max(1, want * self.vectors.shape[1]))
        for lo in range(0, len(queries), step):  # blocks bound the gathered rows' memory
            block = candidates[lo : lo + step]
            rows = np.asarray(self.vectors[np.maximum(block, 0)], dtype=np.float32)
            _unmap(self.vectors)
            exact = np.einsum("qd,qrd->qr", queries[lo : lo + step], rows)
            exact[block < 0] = -np.inf
            order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
            top = np.take_along_axis(exact, order, axis=1)
            sims[lo : lo + step, : top.shape[1]] = top
            positions[lo : lo + step, : top.shape[1]] = np.where(
                np.isfinite(top), np.take_along_axis(block, order, axis=1), -1
            )
        return sims, positions


def _unmap(vectors: np.ndarray) -> None:
    """Drop a memory-mapped file's pages from this process once read. The kernel maps 64 KiB
    around each row a re-rank touches (fault-around), so without this 300 queries at 10M
    scenes mapped the whole vectors file (VmRSS 1.9 GiB, 0.7 GiB with it); the pages stay in
    the page cache (shared, evictable), and a later read maps them again at no disk cost."""
    mapped = getattr(vectors, "_mmap", None)
    if isinstance(mapped, mmap.mmap):
        mapped.madvise(mmap.MADV_DONTNEED)


# ivfpq shards are searched in parallel threads (FAISS and the re-rank release the GIL); one
# OpenMP thread each, so shards x threads do not oversubscribe the cores; 1 searches them in
# turn in the caller's thread (bench/index_disk.py measures both)
SHARD_THREADS = os.cpu_count() or 1
_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(
            max_workers=SHARD_THREADS,
            thread_name_prefix="flywheel-shard",
            initializer=faiss.omp_set_num_threads,
            initargs=(1,),
        )
    return _POOL


@dataclass
class Index:
    """A loaded index: its shards (each with its scene ids) and its manifest."""

    shards: list[Shard]
    manifest: dict

    @cached_property
    def scene_ids(self) -> np.ndarray:
        """The scene id at each global position (Python strings, made on first use: at 10M
        scenes they take ~0.7 GB, so a search that only needs its results uses `ids_at`)."""
        parts = [s.ids.to_numpy(zero_copy_only=False) for s in self.shards]
        return np.concatenate(parts).astype(object) if parts else np.zeros(0, dtype=object)

    def ids_at(self, positions: np.ndarray) -> np.ndarray:
        """The scene ids at global `positions` (any shape); None where a position is -1."""
        positions = np.asarray(positions, dtype=np.int64)
        out = np.full(positions.shape, None, dtype=object)
        for shard in self.shards:
            inside = (positions >= shard.start) & (positions < shard.start + shard.count)
            if inside.any():
                local = pa.array(positions[inside] - shard.start)
                out[inside] = shard.ids.take(local).to_numpy(zero_copy_only=False)
        return out

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def version(self) -> str | None:
        return self.manifest.get("embedding_version")

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def count(self) -> int:
        return int(self.manifest["count"])

    @property
    def exact(self) -> bool:
        return self.kind == "flat"

    def __repr__(self) -> str:
        return (
            f"Index(kind={self.kind!r}, count={self.count}, shards={len(self.shards)}, "
            f"embedding_version={self.version!r}, built_at={self.manifest.get('built_at')!r})"
        )

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        fraction: float | None = None,
        rough: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top `k` (similarities, positions) per query, best first; -1 (and -inf) where fewer
        were found. `allowed` (bool per position) restricts the search inside FAISS, with the
        effort widened by `fraction` (see `Shard.search`). `rough`: compressed kinds skip
        their exact re-rank (a cheap look at a query's neighbourhood)."""
        k = max(1, min(int(k), self.count))
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        todo = []
        for shard in self.shards:
            part = None if allowed is None else allowed[shard.start : shard.start + shard.count]
            if part is not None and not part.any():
                continue  # nothing allowed in this shard: skip it
            todo.append((shard, part))

        def one(job: tuple[Shard, np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
            shard, part = job
            return shard.search(queries, min(k, shard.count), part, fraction, rough)

        # other kinds cost microseconds per shard, less than handing the work to a thread
        parallel = self.kind == "ivfpq" and len(todo) > 1 and SHARD_THREADS > 1
        results = list(_pool().map(one, todo) if parallel else map(one, todo))
        sims_parts, position_parts = [], []
        for (shard, _), (sims, positions) in zip(todo, results, strict=True):
            missing = positions < 0
            if missing.any():
                sims = np.where(missing, -np.inf, sims)
                positions = np.where(missing, -1, positions + shard.start)
            elif shard.start:
                positions = positions + shard.start
            sims_parts.append(sims)
            position_parts.append(positions)
        return best(sims_parts, position_parts, k, len(queries))


def best(
    sims_parts: list[np.ndarray], id_parts: list[np.ndarray], k: int, nq: int
) -> tuple[np.ndarray, np.ndarray]:
    """The top `k` per row of several (similarities, ids) result blocks side by side, best
    first, in block order on ties; padded with -inf / -1 when they hold fewer than `k`."""
    if len(sims_parts) == 1 and sims_parts[0].shape[1] == k:
        return sims_parts[0], id_parts[0]  # one block: nothing to merge
    sims = np.hstack([np.zeros((nq, 0), np.float32), *sims_parts])
    ids = np.hstack([np.zeros((nq, 0), np.int64), *id_parts])
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    sims, ids = np.take_along_axis(sims, order, axis=1), np.take_along_axis(ids, order, axis=1)
    if ids.shape[1] < k:
        pad = k - ids.shape[1]
        sims = np.hstack([sims, np.full((nq, pad), -np.inf, sims.dtype)])
        ids = np.hstack([ids, np.full((nq, pad), -1, ids.dtype)])
    return sims, ids


def index_dir(lake: Lake):
    return lake.root / INDEX_DIR  # local lakes only; object stores go through lake.get/put


def load_index(
    lake: str | os.PathLike | Lake | None = None, reuse: Index | None = None
) -> Index | None:
    """The lake's index as last built, or None when there is none.

    Shards of `reuse` (an index loaded earlier) that the manifest still names are taken from
    it instead of read again: shard files never change once written, so after a build that
    added one shard, a notebook reads one shard.

    >>> load_index(empty_lake) is None
    True
    """
    target = resolve(lake)
    manifest = read_manifest(target)
    if manifest is None:
        return None
    try:
        return _load(target, manifest, reuse)
    except LakeError:
        # a build published a new manifest and removed this one's files meanwhile: retry once
        again = read_manifest(target)
        if again is None or again == manifest:
            raise
        return _load(target, again, reuse)


def read_manifest(target: Lake) -> dict | None:
    try:
        text = target.read_text(f"{INDEX_DIR}/{MANIFEST}")
        return None if text is None else _upgrade(json.loads(text))
    except (OSError, ValueError) as exc:
        raise LakeError(
            f"index manifest {target.location(INDEX_DIR)}/{MANIFEST} is unreadable ({exc}); "
            "rebuild it with `flywheel index --full`"
        ) from exc


def _upgrade(manifest: dict) -> dict:
    """Read a format-1 manifest (one unsharded index) as one shard; it is never reused."""
    if "shards" not in manifest and "files" in manifest:
        manifest["shards"] = [
            {
                "files": manifest["files"],
                "kind": manifest["kind"],
                "count": manifest["count"],
                "dim": manifest["dim"],
                "embedding_version": manifest.get("embedding_version"),
                "params": manifest.get("params", {}),
                "segments": [],
            }
        ]
    return manifest


def _load(target: Lake, manifest: dict, reuse: Index | None = None) -> Index:
    loaded = {s.entry["files"]["index"]: s for s in (reuse.shards if reuse else [])}
    shards, start = [], 0
    try:
        for entry in manifest["shards"]:
            old = loaded.get(entry["files"]["index"])
            if old is not None:
                shard = Shard(old.faiss_index, start, entry, old.ids, old.vectors)
            else:
                shard = _read_shard(target, entry, start)
            shards.append(shard)
            start += entry["count"]
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise LakeError(
            f"index files in {target.location(INDEX_DIR)} are missing or damaged ({exc}); "
            "rebuild it with `flywheel index --full`"
        ) from exc
    return Index(shards, manifest)


def _read_shard(target: Lake, entry: dict, start: int) -> Shard:
    files = {role: target.get(f"{INDEX_DIR}/{name}") for role, name in entry["files"].items()}
    if any(path is None for path in files.values()):
        raise FileNotFoundError("a file the manifest names is gone")
    vectors = None
    if "vectors" in files:  # ivfpq: memory-mapped, so only what a search touches is resident
        faiss_index = faiss.read_index(str(files["index"]), MMAP_FLAGS)
        vectors = np.load(files["vectors"], mmap_mode="r")
    else:
        faiss_index = faiss.read_index(str(files["index"]))
    shard_ids = pq.read_table(files["ids"]).column("scene_id").combine_chunks()
    counts = {faiss_index.ntotal, len(shard_ids), *([] if vectors is None else [len(vectors)])}
    if counts != {entry["count"]}:
        raise ValueError(f"shard {entry['files']['index']} holds the wrong count")
    return Shard(faiss_index, start, entry, shard_ids, vectors)


def warn(message: str) -> None:
    """Index housekeeping goes to stderr, so results on stdout stay clean."""
    console.warn(f"flywheel index: {message}")
