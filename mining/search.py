"""Nearest neighbours over the catalog: the index for what it covers, exact for the rest.

`knn` is the one search both `similar` and `rare` use. It always returns the true top k of the
allowed scenes when the index is exact, and never fewer than k when k are allowed:

- Scenes ingested after the index was built (the unindexed tail) are searched exactly and
  merged, so they are never missed; scenes gone from the lake are dropped (the search asks for
  as many extra neighbours as there are such positions).
- A filter (`allowed`, from `where`) is applied inside the search, never to a short list:
  when few scenes pass (or the index is exact) the search is an exact scan of just those
  scenes; otherwise FAISS searches with an ID selector and a widened effort, and if it still
  returns fewer than k the search falls back to the exact scan.
"""

from __future__ import annotations

import numpy as np

from mining.catalog import Catalog
from mining.index import Index, best

# A filtered search scans the allowed vectors exactly up to this many: at 1M scenes (dim 35)
# that costs 3-12 ms a query here, while HNSW with an ID selector at 50-60% selectivity gave
# recall@10 of 0.965-0.98 even at efSearch 512, worst when the filter is correlated with the
# embedding (bench/mining.py). Beyond this many allowed scenes the selector search is used.
EXACT_FILTERED_MAX = 1_000_000
# Queries times vectors per block of an exact scan (~64 MB of float32 similarities).
BLOCK = 16_000_000


def exact(
    queries: np.ndarray, vectors: np.ndarray, rows: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top k (similarities, rows) of `queries` among `vectors[rows]`; -1 pads."""
    nq = len(queries)
    k_eff = min(k, len(rows))
    scores = np.full((nq, k), -np.inf, dtype=np.float32)
    found = np.full((nq, k), -1, dtype=np.int64)
    if k_eff == 0 or nq == 0:
        return scores, found
    subset = vectors[rows]
    step = max(1, BLOCK // max(1, len(rows)))
    for lo in range(0, nq, step):
        sims = queries[lo : lo + step] @ subset.T
        if k_eff < len(rows):
            top = np.argpartition(-sims, k_eff - 1, axis=1)[:, :k_eff]
        else:
            top = np.broadcast_to(np.arange(len(rows)), sims.shape).copy()
        top_sims = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        scores[lo : lo + step, :k_eff] = np.take_along_axis(top_sims, order, axis=1)
        found[lo : lo + step, :k_eff] = rows[np.take_along_axis(top, order, axis=1)]
    return scores, found


def position_rows(catalog: Catalog, index: Index) -> np.ndarray:
    """The catalog row of each index position; -1 where the scene has left the lake (or its
    embedding is blank: indexes built before blank rows were skipped hold them)."""
    key = ("position_rows", index.manifest.get("built_at"), index.count)
    if key not in catalog._cache:
        rows = catalog.rows(index.scene_ids)
        rows[(rows >= 0) & catalog.blank[np.maximum(rows, 0)]] = -1
        catalog._cache[key] = rows
    return catalog._cache[key]


def stale_positions(catalog: Catalog, index: Index) -> int:
    """How many index positions hold scenes that have left the lake."""
    key = ("stale_positions", index.manifest.get("built_at"), index.count)
    if key not in catalog._cache:
        catalog._cache[key] = int((position_rows(catalog, index) < 0).sum())
    return catalog._cache[key]


def tail_rows(catalog: Catalog, index: Index) -> np.ndarray:
    """Searchable catalog rows the index does not hold (ingested after the build)."""
    key = ("tail_rows", index.manifest.get("built_at"), index.count)
    if key not in catalog._cache:
        covered = catalog.blank.copy()  # blank rows are never searched
        rows = position_rows(catalog, index)
        covered[rows[rows >= 0]] = True
        catalog._cache[key] = np.flatnonzero(~covered)
    return catalog._cache[key]


def knn(
    catalog: Catalog,
    index: Index | None,
    queries: np.ndarray,
    k: int,
    allowed: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top `k` (similarities, catalog rows) per query among `allowed` rows, best first.

    `exclude` holds one catalog row per query never to return (the query scene itself), or -1.
    Rows are -1 (similarity -inf) only when fewer than k scenes are allowed.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    nq = len(queries)
    extra = 0 if exclude is None else 1
    want = k + extra
    if allowed is not None and catalog.blank.any():
        allowed = allowed & ~catalog.blank
    # the candidate rows are only materialised when an exact scan needs them (1M rows: ~1 ms)
    n_allowed = len(catalog.searchable) if allowed is None else int(np.count_nonzero(allowed))

    def candidates() -> np.ndarray:
        return catalog.searchable if allowed is None else np.flatnonzero(allowed)

    if index is None or index.exact or (allowed is not None and n_allowed <= EXACT_FILTERED_MAX):
        scores, rows = exact(queries, catalog.vectors, candidates(), want)
    else:
        scores, rows = _approximate(catalog, index, queries, want, allowed)
        short = (rows >= 0).sum(axis=1) < min(want, n_allowed)
        if short.any():  # the approximate search came back short: never hand back a short list
            scores[short], rows[short] = exact(queries[short], catalog.vectors, candidates(), want)
    if exclude is not None:
        scores, rows = _drop(scores, rows, np.asarray(exclude, dtype=np.int64))
    return scores[:, :k].reshape(nq, k), rows[:, :k].reshape(nq, k)


def _approximate(catalog, index, queries, want, allowed):
    positions_to_rows = position_rows(catalog, index)
    tail = tail_rows(catalog, index)
    if allowed is None:
        selector = None
        stale = stale_positions(catalog, index)
    else:
        selector = np.zeros(index.count, dtype=bool)
        live = positions_to_rows >= 0
        selector[live] = allowed[positions_to_rows[live]]
        stale = 0  # stale positions are outside the selector
        tail = tail[allowed[tail]]
    sims, positions = index.search(queries, want + stale, selector)
    rows = np.where(positions >= 0, positions_to_rows[np.maximum(positions, 0)], -1)
    sims_parts, rows_parts = [np.where(rows >= 0, sims, -np.inf)], [rows]
    if len(tail):
        tail_sims, tail_found = exact(queries, catalog.vectors, tail, want)
        sims_parts.append(tail_sims)
        rows_parts.append(tail_found)
    # padded to `want` when fewer scenes exist, as the exact scan is
    return best(sims_parts, rows_parts, want, len(queries))


def _drop(scores, rows, exclude):
    hit = rows == exclude[:, None]
    keep_order = np.argsort(hit, axis=1, kind="stable")  # excluded entries move to the end
    scores = np.take_along_axis(np.where(hit, -np.inf, scores), keep_order, axis=1)
    rows = np.take_along_axis(np.where(hit, -1, rows), keep_order, axis=1)
    return scores, rows


def rarity(catalog: Catalog, index: Index | None, rows: np.ndarray, neighbors: int) -> np.ndarray:
    """Mean cosine distance (1 - similarity) from each of `rows` to its `neighbors` nearest
    other scenes in the whole lake; higher is more unusual."""
    if len(rows) == 0 or len(catalog.searchable) < 2:
        return np.zeros(len(rows))
    neighbors = max(1, min(neighbors, len(catalog.searchable) - 1))
    sims, found = knn(catalog, index, catalog.vectors[rows], neighbors, exclude=rows)
    distances = np.where(found >= 0, 1.0 - sims, np.nan)
    return np.nanmean(distances, axis=1)
