"""Nearest neighbours over the catalog: the index for what it covers, exact for the rest.

`knn` is the one search both `similar` and `rare` use. It always returns the true top k of the
allowed scenes when the index is exact, and never fewer than k when k are allowed:

- Scenes ingested after the index was built (the unindexed tail) are searched exactly and
  merged, so they are never missed; scenes gone from the lake are dropped (the search asks for
  as many extra neighbours as there are such positions).
- A filter (`allowed`, from `where`) is applied inside the search, never to a short list,
  and planned per query from what it allows:
  - few scenes pass (`exact_filtered_max`, fewer for wider vectors), or the index is exact:
    an exact scan of just those scenes, over their vectors gathered once per filter
    (`Filtered`);
  - many pass: a probe of the query's unfiltered neighbourhood (`PROBE` scenes) measures how
    much of it the filter allows. Where that share is at least `LOCAL_MIN`, FAISS searches
    with an ID selector and an effort widened by it. Where a thin share passes (at least
    `OVERFETCH_MIN_SHARE`), enough unfiltered neighbours to hold ~3k allowed ones are
    fetched and filtered. Where the filter leaves the query's neighbourhood nearly empty (a
    filter correlated with the embedding), a graph search would stall in the excluded
    region, so that query scans the allowed scenes exactly (gathered into one array when
    they are few, read in place when many). Any route that returns fewer than k falls back
    to the exact scan.
"""

from __future__ import annotations

import numpy as np

from mining.catalog import Catalog
from mining.index import Index, best

# A filtered search scans the allowed vectors exactly up to this many numbers (100k scenes at
# dim 35: ~1-2 ms a query over vectors gathered once; 13k scenes at dim 768); beyond, it is
# planned per query from its neighbourhood.
EXACT_FILTERED_MAX = 100_000
EXACT_FILTERED_VALUES = 10_000_000  # 13k scenes at dim 768: ~3-5 ms a query
# The unfiltered neighbours a filtered query looks at to see how much of its region passes,
# and the share below which a selector search is not trusted (HNSW with an ID selector gave
# recall@10 of 0 for queries whose region a correlated filter excludes, bench/mining.py).
PROBE = 100
LOCAL_MIN = 0.2
# Below LOCAL_MIN but at least OVERFETCH_MIN_SHARE: the query's unfiltered neighbours are
# fetched, enough of them to hold OVERFETCH_FACTOR times k allowed ones, and filtered (an
# unfiltered graph search of 1,000 costs ~1-2 ms at dim 35, an exact scan of 600k rows ~10-20).
OVERFETCH_MIN_SHARE = 0.03
OVERFETCH_FACTOR = 3.0
OVERFETCH_MAX = 2048
# Gathered vectors of recent filters kept per catalog, in bytes (a 50% filter at 1M x 35: 70 MB).
FILTERED_CACHE_BYTES = 512 * 2**20
# A filter allowing at most this many numbers (rows x dim) has its vectors gathered into one
# array at its first exact scan; a broader one is scanned in place.
GATHER_MAX_VALUES = EXACT_FILTERED_VALUES
# Queries times vectors per block of an exact scan (~64 MB of float32 similarities).
BLOCK = 16_000_000


def exact_filtered_max(dim: int) -> int:
    """The most allowed scenes a filtered search scans exactly, at embedding width `dim`."""
    return min(EXACT_FILTERED_MAX, EXACT_FILTERED_VALUES // max(dim, 1))


def exact(
    queries: np.ndarray,
    vectors: np.ndarray,
    rows: np.ndarray,
    k: int,
    rows_of: np.ndarray | None = None,
    in_place: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top k (similarities, rows) of `queries` among `vectors[rows]`; -1 pads. With
    `rows_of`, `vectors` is already the gathered subset (`rows` all of it) and the rows
    returned are `rows_of[...]`. With `in_place`, `vectors` is read where it is: every row is
    scored, then the similarities of `rows` picked (no copy of the vectors)."""
    nq = len(queries)
    k_eff = min(k, len(rows))
    scores = np.full((nq, k), -np.inf, dtype=np.float32)
    found = np.full((nq, k), -1, dtype=np.int64)
    if k_eff == 0 or nq == 0:
        return scores, found
    subset = vectors if rows_of is not None or in_place else vectors[rows]
    names = rows_of if rows_of is not None else rows
    step = max(1, BLOCK // max(1, len(subset)))
    for lo in range(0, nq, step):
        sims = queries[lo : lo + step] @ subset.T
        if in_place:
            sims = sims[:, rows]
        if k_eff < len(rows):
            top = np.argpartition(-sims, k_eff - 1, axis=1)[:, :k_eff]
        else:
            top = np.broadcast_to(np.arange(len(rows)), sims.shape).copy()
        top_sims = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        scores[lo : lo + step, :k_eff] = np.take_along_axis(top_sims, order, axis=1)
        found[lo : lo + step, :k_eff] = names[np.take_along_axis(top, order, axis=1)]
    return scores, found


class Filtered:
    """A filter's allowed rows and their vectors gathered into one contiguous array, and the
    index positions it allows: what every query with that filter reuses. The vectors are
    gathered at the first exact scan (a broad filter whose queries all take the selector
    search never pays for the copy)."""

    def __init__(self, catalog: Catalog, allowed: np.ndarray) -> None:
        self.catalog = catalog
        self.allowed = allowed
        self.rows = np.flatnonzero(allowed)
        self._vectors: np.ndarray | None = None
        self.selectors: dict[object, np.ndarray] = {}

    @property
    def vectors(self) -> np.ndarray:
        if self._vectors is None:
            self._vectors = np.ascontiguousarray(self.catalog.vectors[self.rows])
        return self._vectors

    @property
    def nbytes(self) -> int:
        return 0 if self._vectors is None else self._vectors.nbytes

    @classmethod
    def of(cls, catalog: Catalog, allowed: np.ndarray) -> Filtered:
        """The cached `Filtered` of `allowed` (the same mask object: `Miner` caches masks per
        filter text), evicting the oldest past FILTERED_CACHE_BYTES."""
        cache: dict[int, Filtered] = catalog._cache.setdefault("filtered", {})
        found = cache.get(id(allowed))
        if found is not None and found.allowed is allowed:
            return found
        made = cls(catalog, allowed)
        cache[id(allowed)] = made
        while len(cache) > 1 and sum(f.nbytes for f in cache.values()) > FILTERED_CACHE_BYTES:
            cache.pop(next(iter(cache)))  # the oldest
        return made

    def selector(self, catalog: Catalog, index: Index) -> np.ndarray:
        """The allowed index positions (stale positions are not allowed)."""
        key = (index.manifest.get("built_at"), index.count)
        if key not in self.selectors:
            if in_order(catalog, index):  # position i is row i: the filter's mask as it is
                selector = self.allowed[: index.count]
            else:
                rows = position_rows(catalog, index)
                live = rows >= 0
                selector = np.zeros(index.count, dtype=bool)
                selector[live] = self.allowed[rows[live]]
            self.selectors = {key: selector}
        return self.selectors[key]

    def exact(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.rows) * self.catalog.dim > GATHER_MAX_VALUES:
            # a broad filter is scanned in place: copying 600k rows cost 200 ms here (fresh
            # memory faults in), ten times a scan of every row
            return exact(queries, self.catalog.vectors, self.rows, k, in_place=True)
        return exact(queries, self.vectors, np.arange(len(self.rows)), k, rows_of=self.rows)


def position_rows(catalog: Catalog, index: Index) -> np.ndarray:
    """The catalog row of each index position; -1 where the scene has left the lake (or its
    embedding is blank: indexes built before blank rows were skipped hold them)."""
    key = ("position_rows", index.manifest.get("built_at"), index.count)
    if key not in catalog._cache:
        rows = catalog.rows(index.scene_ids)
        rows[(rows >= 0) & catalog.blank[np.maximum(rows, 0)]] = -1
        catalog._cache[key] = rows
    return catalog._cache[key]


def in_order(catalog: Catalog, index: Index) -> bool:
    """Whether index position i holds catalog row i for every position (the index was built
    from these scenes in id order, none left since): a filter's mask is then its selector."""
    key = ("in_order", index.manifest.get("built_at"), index.count)
    if key not in catalog._cache:
        rows = position_rows(catalog, index)
        catalog._cache[key] = bool(np.array_equal(rows, np.arange(len(rows))))
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
    exact_max = exact_filtered_max(catalog.dim)

    def scan(part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if allowed is None:
            return exact(part, catalog.vectors, catalog.searchable, want)
        return Filtered.of(catalog, allowed).exact(part, want)

    # unfiltered, a flat index is an exact scan too, and FAISS's is faster than numpy's
    filtered_exact = allowed is not None and (
        index is None or index.exact or n_allowed <= exact_max
    )
    if index is None or filtered_exact:
        scores, rows = scan(queries)
    else:
        local = None if allowed is None else _local_share(catalog, index, queries, allowed)
        scores = np.full((nq, want), -np.inf, dtype=np.float32)
        rows = np.full((nq, want), -1, dtype=np.int64)
        graph = np.ones(nq, bool) if local is None else local >= LOCAL_MIN
        if local is not None and index.kind != "hnsw":
            # a list scan (IVF) does not stall where a filter empties the query's region: it
            # searches every query, probing more lists the less of the region passes
            graph[:] = False
            level = np.floor(np.log2(np.clip(local, 1e-3, 1.0)))  # fraction rounded down
            for value in np.unique(level):
                group = level == value
                scores[group], rows[group] = _approximate(
                    catalog, index, queries[group], want, allowed, float(2.0**value)
                )
        if graph.any():
            fraction = None if local is None else float(local[graph].min())
            scores[graph], rows[graph] = _approximate(
                catalog, index, queries[graph], want, allowed, fraction
            )
        if local is not None and index.kind == "hnsw":
            # a thin share of the region passes: the allowed among enough unfiltered
            # neighbours are the nearest allowed ones
            over = ~graph & (local >= OVERFETCH_MIN_SHARE)
            if over.any():
                scores[over], rows[over] = _overfetch(
                    catalog, index, queries[over], want, allowed, float(local[over].min())
                )
        short = (rows >= 0).sum(axis=1) < min(want, n_allowed)
        # the filter empties the query's region, or the graph came back short: scan exactly
        if short.any():
            scores[short], rows[short] = scan(queries[short])
    if exclude is not None:
        scores, rows = _drop(scores, rows, np.asarray(exclude, dtype=np.int64))
    return scores[:, :k].reshape(nq, k), rows[:, :k].reshape(nq, k)


def _overfetch(catalog, index, queries, want, allowed, share):
    """The top `want` allowed among each query's unfiltered nearest `OVERFETCH_FACTOR * want /
    share` (at most OVERFETCH_MAX); short rows fall back to the exact scan in `knn`."""
    fetch = int(min(OVERFETCH_MAX, np.ceil(OVERFETCH_FACTOR * want / share)))
    sims, found = _approximate(catalog, index, queries, fetch, None)
    passed = (found >= 0) & allowed[np.maximum(found, 0)]
    order = np.argsort(~passed, axis=1, kind="stable")[:, :want]  # allowed first, by rank
    sims = np.where(passed, sims, -np.inf)
    found = np.where(passed, found, -1)
    return np.take_along_axis(sims, order, axis=1), np.take_along_axis(found, order, axis=1)


def _local_share(catalog, index, queries, allowed) -> np.ndarray:
    """Per query, the share of its PROBE unfiltered nearest scenes that `allowed` lets in."""
    _, rows = _approximate(catalog, index, queries, PROBE, None, rough=True)
    seen = rows >= 0
    passed = np.where(seen, allowed[np.maximum(rows, 0)], False)
    return passed.sum(axis=1) / np.maximum(seen.sum(axis=1), 1)


def _approximate(catalog, index, queries, want, allowed, fraction=None, rough=False):
    positions_to_rows = position_rows(catalog, index)
    tail = tail_rows(catalog, index)
    if allowed is None:
        selector = None
        stale = stale_positions(catalog, index)
    else:
        selector = Filtered.of(catalog, allowed).selector(catalog, index)
        stale = 0  # stale positions are outside the selector
        tail = tail[allowed[tail]]
    sims, positions = index.search(queries, want + stale, selector, fraction, rough)
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
