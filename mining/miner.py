"""`Miner`: the notebook API of docs/contract.md §5, one object per lake.

>>> import mining
>>> m = mining.open(lake)
>>> m.sql("SELECT count(*) AS n FROM scenes")["n"].tolist()
[6]
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.api.internals import create_dataframe_from_blocks

from flywheel import console
from flywheel import query as _query
from flywheel.errors import InputError
from flywheel.lake import Lake, resolve
from flywheel.query import Limits
from ingest import triggers as _triggers
from mining import build as _build
from mining import index as _index
from mining import search as _search
from mining import select as _select
from mining import where as _where
from mining.catalog import Catalog, fingerprint
from mining.gallery import Gallery
from mining.gallery import gallery as _gallery

# below this many candidate scenes `rare` scores them directly; above, every scene's rarity is
# computed once per lake snapshot and cached (memory and <lake>/_index/rarity-*.npy)
RARITY_DIRECT_MAX = 20_000
_RARITY = "rarity"

# Result columns shown first, in this order; the other scene columns follow.
LEADING = (
    "scene_id",
    "score",
    "rank",
    "log_id",
    "start",
    "start_ns",
    "end_ns",
    "tags",
    "max_speed",
    "min_accel",
    "min_object_distance",
    "n_tracks",
    "n_pedestrians",
    "n_vehicles",
    "n_animals",
    "n_other",
    "categories",
    "is_night",
)
HIDDEN = ("embedding", "embedding_version")


def open(lake: str | os.PathLike | Lake | None = None) -> Miner:
    """A miner over `lake` (default: $FLYWHEEL_LAKE, flywheel.toml, else ./lake).

    >>> open(lake).lake.root.name
    'lake'
    """
    return Miner(resolve(lake))


def _one_snapshot(method):
    """Run a search on one snapshot of the lake: its helpers skip re-listing the files."""

    @functools.wraps(method)
    def wrapper(self: Miner, *args, **kwargs):
        if self._pinned is not None:  # nested: already pinned by the outer call
            return method(self, *args, **kwargs)
        self._pinned = self.catalog()
        try:
            return method(self, *args, **kwargs)
        finally:
            self._pinned = None

    return wrapper


class Miner:
    """Scene search over one lake: SQL, similarity, rarity, diversity, saved selections.

    Results are pandas DataFrames, best first: `scene_id`, `score`, `rank`, then the scene's
    metadata (log, times, tags, key features; never the embedding). ``df.attrs["query"]``
    holds the call that produced them, which `save` records.
    """

    def __init__(self, lake: Lake, limits: Limits | None = None) -> None:
        self.lake = lake
        self._limits = limits
        self._catalog: Catalog | None = None
        self._sandbox: tuple[tuple, duckdb.DuckDBPyConnection] | None = None
        self._masks: dict[str, np.ndarray] = {}
        self._loaded_index: _index.Index | None = None
        self._pinned: Catalog | None = None  # the snapshot of the call in progress
        self._manifest: tuple[object, str | None] = (None, None)  # (file stamp, text)

    def __repr__(self) -> str:
        return f"Miner({str(self.lake.root)!r})"

    # -- SQL ---------------------------------------------------------------------------------
    @property
    def limits(self) -> Limits:
        """What each query may take (``[mining] query_timeout_s`` and ``query_memory``), read
        from the configuration once per miner; assign a `flywheel.query.Limits` to change it."""
        if self._limits is None:
            self._limits = Limits.from_config()
        return self._limits

    @limits.setter
    def limits(self, value: Limits) -> None:
        self._limits = value

    def sql(self, query: str) -> pd.DataFrame:
        """Run DuckDB SQL over the lake; every table of docs/contract.md §2 is a view of that name.

        Read-only and bounded (`flywheel.query`): one SELECT (or DESCRIBE, SUMMARIZE, SHOW,
        EXPLAIN of one) over the lake's tables; anything else is a QueryError.

        >>> m = open(lake)
        >>> m.sql("SELECT count(*) AS n FROM scenes WHERE max_speed > 0")["n"].tolist()
        [6]
        """
        frame = _query.sql(self.lake, query, self.limits)
        frame.attrs["query"] = f"sql({query!r})"
        return frame

    # -- the snapshot and the index ----------------------------------------------------------
    def catalog(self) -> Catalog:
        """The scenes snapshot, reloaded when the lake's scenes changed since the last call."""
        if self._pinned is not None:  # one call works on one snapshot: list the lake once
            return self._pinned
        if self._catalog is None or self._catalog.source != fingerprint(self.lake):
            self._catalog = Catalog.load(self.lake)
            self._sandbox = None
        return self._catalog

    def build_index(
        self,
        kind: str = "auto",
        full: bool = False,
        *,
        shard_size: int | None = None,
        scheduler: str | None = None,
    ) -> _index.Index:
        """Bring the lake's FAISS index up to date (only new or changed shards are built;
        `full` rebuilds all of them), in shards of `shard_size` scenes (default SHARD_SIZE),
        on the Dask cluster at `scheduler` if given. ``m.build_index("hnsw")``"""
        self._loaded_index = _build.build_index(
            self.lake,
            kind,
            full=full,
            shard_size=shard_size,
            scheduler=scheduler,
            reuse=self._loaded_index,
        )
        return self._loaded_index

    def index(self) -> _index.Index:
        """The lake's index; built when missing, rebuilt when it belongs to another embedding."""
        catalog = self.catalog()
        current = self._loaded_index
        published = self._published_manifest()
        if current is None or published is None or published != _index_manifest_text(current):
            current = _index.load_index(self.lake, reuse=current)
        if current is None:
            _index.warn(f"no index in {self.lake.root} yet: building one ({catalog.count} scenes)")
            current = _build.build_index(self.lake)
        elif catalog.count and (current.version != catalog.version or current.dim != catalog.dim):
            _index.warn(
                f"the index was built for embedding_version {current.version!r} "
                f"(dim {current.dim}) but the lake's scenes are {catalog.version!r} "
                f"(dim {catalog.dim}): rebuilding it"
            )
            current = _build.build_index(
                self.lake, current.manifest.get("requested_kind", "auto"), full=True
            )
        self._loaded_index = current
        return current

    def _published_manifest(self) -> str | None:
        """The index manifest's text, re-read only when its file changed (a stat, not a read)."""
        if not self.lake.local:
            return _read_manifest(self.lake)
        path = _index.index_dir(self.lake) / _index.MANIFEST
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if self._manifest[0] != stamp:
            self._manifest = (stamp, _read_manifest(self.lake))
        return self._manifest[1]

    def _mask(self, where: str | None) -> np.ndarray | None:
        if where is None:
            return None
        catalog = self.catalog()
        _where.check(where)
        # `triggers` (the saved triggers whose hits overlap a scene) exists only for filters
        # that name it: computing it costs a read of the hits
        hits = self.lake.snapshot(["triggers", "trigger_runs", "trigger_hits"])
        key = (id(catalog), hits if _where.uses_triggers(where) else None)
        if self._sandbox is None or self._sandbox[0] != key:
            extra = None
            if key[1] is not None:
                extra = {"triggers": _triggers.scene_triggers(self.lake, catalog.meta["scene_id"])}
            self._sandbox = (key, _where.sandbox(catalog.meta, self.limits, extra))
            self._masks = {}
        # the same filter over the same snapshot gives the same rows: notebooks repeat filters
        if where not in self._masks:
            if len(self._masks) >= 32:
                self._masks.clear()
            mask = _where.evaluate(self._sandbox[1], where, catalog.count, self.limits)
            mask.flags.writeable = False
            self._masks[where] = mask
        return self._masks[where]

    # -- search ------------------------------------------------------------------------------
    @_one_snapshot
    def similar(
        self,
        query: str | Sequence[float] | np.ndarray | Sequence[str] | Sequence[Sequence[float]],
        k: int = 50,
        where: str | None = None,
    ) -> pd.DataFrame:
        """The `k` scenes most similar to a scene (by id, itself excluded) or to a raw vector.

        `score` is the cosine similarity (1 = same direction). `where`, a DuckDB boolean
        expression over scenes columns, is applied inside the search: k matching scenes come
        back whenever k exist. A list of scene ids, or of vectors (a 2-D array), is searched in
        one call of the index: the frame then starts with `query` (the id, or the vector's
        position) and ranks each query's scenes from 1, as separate calls would.

        >>> m = open(lake)
        >>> found = m.similar(scene, k=3, where="max_speed > 0")
        >>> len(found), scene in set(found["scene_id"]), list(found.columns[:2])
        (3, False, ['scene_id', 'score'])
        >>> both = m.similar([scene, scene], k=2)
        >>> both["query"].tolist() == [scene] * 4, both["rank"].tolist()
        (True, [1, 2, 1, 2])
        """
        k = _positive(k, "k")
        catalog = self.catalog()
        batch = _is_batch(query)
        queries = list(query) if batch else [query]
        if isinstance(query, list | tuple) and not query:
            raise InputError("similar() needs a scene id, a vector, or a list of them; got []")
        vectors, excluded, labels = [], [], []
        for one in queries:
            if isinstance(one, str):
                row = self._query_row(catalog, one)
                vectors.append(catalog.vectors[row])
                excluded.append(row)
                labels.append(repr(one))
            else:
                vectors.append(_vector(one, catalog.dim))
                excluded.append(-1)
                labels.append(f"<vector dim={len(vectors[-1])}>")
        label = f"[{len(queries)} queries]" if batch else labels[0]
        mask = self._mask(where)
        call = _call("similar", label, k, where)
        if catalog.count == 0:
            frame = self._frame(np.zeros(0, np.int64), np.zeros(0), call)
            if batch:
                frame.insert(0, "query", pd.Series([], dtype=object))
            return frame
        exclude = np.asarray(excluded, dtype=np.int64)
        sims, rows = _search.knn(
            catalog, self.index(), np.stack(vectors), k, mask,
            exclude if (exclude >= 0).any() else None,
        )  # fmt: skip
        keep = rows >= 0
        frame = self._frame(rows[keep], sims[keep], call)
        if not batch:
            return frame
        counts = keep.sum(axis=1)
        frame["rank"] = np.concatenate([np.arange(1, c + 1) for c in counts]) if len(frame) else []
        names = [q if isinstance(q, str) else i for i, q in enumerate(queries)]
        frame.insert(0, "query", np.repeat(np.asarray(names, dtype=object), counts))
        return frame

    def _query_row(self, catalog: Catalog, scene_id: str) -> int:
        row = catalog.row(scene_id)
        if row is None:
            raise InputError(
                f"scene {scene_id!r} is not in the lake {self.lake.root} ({catalog.count} "
                "scenes); list some with m.sql('SELECT scene_id, tags FROM scenes LIMIT 10')",
                scene_id=scene_id,
            )
        if catalog.blank[row]:
            raise InputError(
                f"scene {scene_id!r} has an all-zero embedding (no direction: simulated history "
                "or a failed embedder), so no scene is similar to it",
                scene_id=scene_id,
            )
        return row

    @_one_snapshot
    def rare(self, k: int = 100, where: str | None = None, neighbors: int = 10) -> pd.DataFrame:
        """The `k` most unusual scenes (among those matching `where`), most unusual first.

        `score` is the mean cosine distance (1 - similarity, 0..2) from the scene to its
        `neighbors` nearest other scenes in the whole lake: a scene in a dense region (ordinary
        driving, seen thousands of times) has close neighbours and a low score; a scene whose
        situation occurs only a handful of times (an unknown object, an animal, an odd
        manoeuvre) must reach beyond its few look-alikes for `neighbors` neighbours and scores
        high. `neighbors` should exceed how many copies of a "rare" event you expect.

        >>> rare = open(lake).rare(k=3)
        >>> len(rare), rare["score"].is_monotonic_decreasing
        (3, True)
        """
        k = _positive(k, "k")
        neighbors = _positive(neighbors, "neighbors")
        catalog = self.catalog()
        mask = self._mask(where)
        rows = catalog.searchable
        if mask is not None:
            rows = rows[mask[rows]]
        index = self.index() if catalog.count else None
        if len(rows) <= RARITY_DIRECT_MAX and (_RARITY, neighbors) not in catalog._cache:
            scores = _search.rarity(catalog, index, rows, neighbors)
        else:
            scores = self._rarity_of_all(index, neighbors)[rows]
        order = np.argsort(-scores, kind="stable")[:k]
        call = (
            _call("rare", None, k, where)
            if neighbors == 10
            else _call("rare", None, k, where, f"neighbors={neighbors}")
        )
        return self._frame(rows[order], scores[order], call)

    def _rarity_of_all(self, index: _index.Index | None, neighbors: int) -> np.ndarray:
        """Every scene's rarity, computed once per snapshot of the lake and kept on disk: at a
        million scenes it is a million neighbour searches, too slow to repeat per query."""
        catalog = self.catalog()
        key = (_RARITY, neighbors)
        if key not in catalog._cache:
            digest = hashlib.sha256(repr((catalog.source, catalog.version)).encode()).hexdigest()
            name = f"rarity-{neighbors}-{digest[:16]}.npy"
            path = self.lake.get(f"{_index.INDEX_DIR}/{name}")
            if path is not None:
                scores = np.load(path)
            else:
                scores = np.full(catalog.count, np.nan)  # blank scenes have no rarity
                every = catalog.searchable
                scores[every] = _search.rarity(catalog, index, every, neighbors)
                for stale in self.lake.listdir(_index.INDEX_DIR):
                    if stale.startswith(f"rarity-{neighbors}-"):
                        self.lake.delete(f"{_index.INDEX_DIR}/{stale}")

                def save(target) -> None:
                    with target.open("wb") as handle:
                        np.save(handle, scores)

                self.lake.put(f"{_index.INDEX_DIR}/{name}", save)
            catalog._cache[key] = scores
        return catalog._cache[key]

    @_one_snapshot
    def diverse(
        self,
        candidates: pd.DataFrame | Sequence[str] | str,
        n: int = 200,
        weight: str | None = None,
    ) -> pd.DataFrame:
        """A spread-out subset of `n` candidates (greedy k-center on the embeddings).

        `candidates` is a DataFrame with `scene_id` (e.g. a `similar` or `rare` result), a list
        of scene ids, or the name of a saved selection. `weight` names a numeric column of the
        DataFrame (e.g. "score") that favours high-scoring scenes: each pick maximises
        weight x distance to the nearest scene already picked. `score` in the result is that
        distance at the time of the pick (how much new ground the scene covers).

        >>> m = open(lake)
        >>> len(m.diverse(m.rare(k=4), n=2, weight="score"))
        2
        """
        n = _positive(n, "n")
        catalog = self.catalog()
        source = None
        if isinstance(candidates, str):
            source = candidates
            candidates = self.selection(candidates)
        if isinstance(candidates, pd.DataFrame):
            if "scene_id" not in candidates.columns:
                raise InputError("candidates has no scene_id column; pass a mining result")
            ids = list(candidates["scene_id"])
            if weight is not None and weight not in candidates.columns:
                raise InputError(
                    f"weight column {weight!r} is not in candidates "
                    f"(columns: {', '.join(map(str, candidates.columns))})"
                )
            values = None if weight is None else candidates[weight].to_numpy(dtype=float)
        else:
            if weight is not None:
                raise InputError("weight names a column: pass candidates as a DataFrame")
            ids, values = list(candidates), None
        rows = catalog.rows(ids)
        if (rows < 0).any():
            missing = [s for s, r in zip(ids, rows, strict=True) if r < 0]
            raise InputError(
                f"{len(missing)} candidate scenes are not in the lake (e.g. {missing[:3]}); "
                "pass scene ids from this lake"
            )
        rows, first = np.unique(rows, return_index=True)  # duplicates count once
        blank = catalog.blank[rows]
        if blank.any():  # no direction, no distance: they cannot be spread out
            console.warn(
                f"diverse: {int(blank.sum())} candidate scenes have an all-zero embedding "
                "(simulated history or a failed embedder) and are left out"
            )
            rows, first = rows[~blank], first[~blank]
        weights = None if values is None else _select.normalise_weights(values[first])
        picked, gaps = _select.k_center(catalog.vectors[rows], n, weights)
        label = repr(source) if source else f"<{len(rows)} scenes>"
        extra = f"weight={weight!r}" if weight else None
        return self._frame(rows[picked], gaps, _call("diverse", label, None, None, f"n={n}", extra))

    # -- triggers ----------------------------------------------------------------------------
    def trigger(
        self,
        when: str,
        for_: float = 0.0,
        gap: float = 0.0,
        then: str | None = None,
        within: float | None = None,
    ) -> pd.DataFrame:
        """The hits of a condition over every sample of every log, without saving a trigger:
        one row per time range (`log_id`, `start_ns`, `end_ns`, the peaks, `scene_ids`).

        `when` is one DuckDB boolean expression over the signal frame (`flywheel trigger
        columns`); `for_` the seconds it must hold; `gap` bridges short false runs; `then`
        and `within`: a second condition that must follow within that many seconds.

        >>> hits = open(lake).trigger(when="accel < -2", for_=0.5)
        >>> sorted(hits["log_id"]) == sorted(open(lake).sql("SELECT log_id FROM logs")["log_id"])
        True
        """
        found = _triggers.evaluate(self.lake, when, for_, gap, then, within)
        found.attrs["query"] = f"trigger(when={when!r}, for_={for_:g})"
        return found

    # -- seeing -------------------------------------------------------------------------------
    def show(self, scenes: pd.DataFrame | Sequence[str] | str, camera: bool = True) -> Gallery:
        """A gallery of `scenes` (a mining result, scene ids, or one id) that renders in
        Jupyter: a bird's-eye picture per scene with its id, score, tags and key features, and
        the camera keyframe where the log has one. `.save(path)` writes it as one HTML file.

        >>> m = open(lake)
        >>> m.show(m.rare(k=2)).scene_ids == m.rare(k=2).scene_id.tolist()
        True
        """
        if isinstance(scenes, str):
            scenes = [scenes]
        meta = None
        if self._catalog is not None:  # loaded by a search: the rows from memory, no query
            ids = scenes["scene_id"] if isinstance(scenes, pd.DataFrame) else list(scenes)
            catalog = self.catalog()
            rows = catalog.rows([str(s) for s in ids])
            meta = catalog.meta.take(pa.array(rows[rows >= 0]))
        # else: a few logs' scenes files beat loading every scene into a catalog
        return _gallery(self.lake, scenes, camera=camera, rows=meta)

    def trigger_scenes(self, name: str) -> pd.DataFrame:
        """The scenes that overlap the hits of the saved trigger `name` (its current version),
        each once, in log and time order, with their metadata (`mine trigger NAME`)."""
        found = _triggers.hits(self.lake, name)
        ids = list(dict.fromkeys(s for scene_ids in found["scene_ids"] for s in scene_ids))
        catalog = self.catalog()
        rows = catalog.rows(ids)
        rows = rows[rows >= 0]
        frame = self._frame(rows, np.full(len(rows), np.nan), None)
        frame.attrs["query"] = f"trigger {name}"
        return frame

    # -- selections --------------------------------------------------------------------------
    def save(
        self,
        name: str,
        df: pd.DataFrame | Sequence[str],
        replace: bool = False,
        query: str | None = None,
    ):
        """Store `df` (ranked as given) as selection `name` and record `mined` events.

        Saving an existing name raises InputError unless `replace=True`.

        >>> m = open(lake)
        >>> m.save("look-alikes", m.similar(scene, k=3)).name
        'look-alikes.parquet'
        """
        _select.check_name(name)
        if isinstance(df, pd.DataFrame):
            if "scene_id" not in df.columns:
                raise InputError("the frame to save has no scene_id column; pass a mining result")
            ids = [str(s) for s in df["scene_id"]]
            scores = df["score"].tolist() if "score" in df.columns else None
            query = query or df.attrs.get("query") or "dataframe"
        else:
            ids, scores = [str(s) for s in df], None
            query = query or "scene ids"
        if not ids:
            raise InputError(f"nothing to save as {name!r}: the selection is empty")
        catalog = self.catalog()
        missing = [s for s, r in zip(ids, catalog.rows(ids), strict=True) if r < 0]
        if missing:
            raise InputError(
                f"{len(missing)} scenes to save as {name!r} are not in the lake "
                f"(e.g. {missing[:3]}); save scene ids from this lake"
            )
        return _select.save(self.lake, name, ids, scores, query, replace)

    def selection(self, name: str) -> pd.DataFrame:
        """A saved selection, by rank, with its scenes' metadata."""
        _select.check_name(name)
        if not self.lake.exists("selections", name):
            raise InputError(
                f"no selection {name!r} in {self.lake.root}; saved ones: "
                f"{', '.join(self.selections()) or 'none'}",
                name=name,
            )
        saved = self.lake.read_file("selections", name).to_pandas().sort_values("rank")
        catalog = self.catalog()
        rows = catalog.rows(saved["scene_id"])
        known = rows >= 0
        frame = self._frame(rows[known], saved["score"].to_numpy(dtype=float)[known], None)
        frame.attrs["query"] = str(saved["query"].iloc[0]) if len(saved) else f"selection {name}"
        return frame

    def selections(self) -> list[str]:
        """Names of the saved selections."""
        return sorted(p.stem for p in self.lake.files("selections"))

    # -- results -----------------------------------------------------------------------------
    def _frame(self, rows: np.ndarray, scores: np.ndarray, query: str | None) -> pd.DataFrame:
        catalog = self.catalog()
        results = catalog._cache.get("results")
        if results is None:
            results = catalog._cache["results"] = Results(catalog.meta)
        frame = results.take(np.asarray(rows, dtype=np.int64), np.asarray(scores, np.float64))
        frame.attrs["query"] = query
        return frame


class Results:
    """Every scene as a result row, held as the blocks of a pandas frame (one 2-D array per
    dtype, one array per extension column): a result is one numpy take per block. Built once
    per catalog. At k=10 a `DataFrame.take` of the same frame cost 0.4 ms, three times the
    FAISS search; assembling the blocks costs ~0.05 ms (bench/mining.py)."""

    def __init__(self, meta: pa.Table) -> None:
        frame = _result_table(meta)
        self.columns = frame.columns
        self.score_at = int(frame.columns.get_loc("score"))
        self.rank_at = int(frame.columns.get_loc("rank"))
        self.blocks: list[tuple[object, np.ndarray]] = []
        numpy_columns: dict[np.dtype, list[int]] = {}
        for at, name in enumerate(frame.columns):
            if at in (self.score_at, self.rank_at):
                continue
            values = frame[name].array
            if isinstance(values, pd.arrays.NumpyExtensionArray):
                numpy_columns.setdefault(values.to_numpy().dtype, []).append(at)
            else:  # strings (Arrow), datetimes with a zone: one 1-D block each
                self.blocks.append((values, np.array([at])))
        for dtype, places in numpy_columns.items():
            stacked = np.stack([frame.iloc[:, at].to_numpy(dtype) for at in places])
            self.blocks.append((stacked, np.asarray(places)))

    def take(self, rows: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
        """The result frame of catalog `rows` with their `scores`, ranked from 1."""
        n = len(rows)
        blocks: list = [
            (values[:, rows], places) if isinstance(values, np.ndarray)
            else (values.take(rows), places)  # type: ignore[attr-defined]
            for values, places in self.blocks
        ]  # fmt: skip
        blocks.append((scores.reshape(1, n), np.array([self.score_at])))
        blocks.append((np.arange(1, n + 1, dtype=np.int64).reshape(1, n), np.array([self.rank_at])))
        return create_dataframe_from_blocks(blocks, pd.RangeIndex(n), self.columns)


def _result_table(meta: pa.Table) -> pd.DataFrame:
    """Every scene as a result row (score and rank blank), in result column order."""
    names = meta.column_names  # a property that builds a new list: read it once
    columns: dict[str, object] = {
        name: _to_numpy(column)
        for name, column in zip(names, meta.columns, strict=True)
        if name not in HIDDEN
    }
    columns["score"] = np.full(meta.num_rows, np.nan)
    columns["rank"] = np.zeros(meta.num_rows, dtype=np.int64)
    if "start_ns" in columns:
        columns["start"] = pd.to_datetime(columns["start_ns"], unit="ns", utc=True)
    leading = [c for c in LEADING if c in columns]
    order = leading + [c for c in columns if c not in leading]
    return pd.DataFrame({c: columns[c] for c in order}, copy=False)


def _to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """A column as pandas would hold it (nulls as NaN/None, lists as arrays)."""
    if pa.types.is_timestamp(column.type):
        return column.to_pandas()
    return column.to_numpy()


def _is_batch(query: object) -> bool:
    """Several queries: a list or tuple of scene ids or of vectors, or a 2-D array."""
    if isinstance(query, np.ndarray):
        return query.ndim == 2
    if isinstance(query, list | tuple) and query:
        first = query[0]
        return isinstance(first, str | list | tuple | np.ndarray)
    return False


def _positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _vector(query, dim: int) -> np.ndarray:
    try:
        vector = np.asarray(query, dtype=np.float32).ravel()
    except (TypeError, ValueError) as exc:
        raise InputError(
            "query must be a scene id (str) or a vector of numbers", query=str(query)[:80]
        ) from exc
    if dim and len(vector) != dim:
        raise InputError(
            f"the query vector has {len(vector)} numbers; this lake's embeddings have {dim}"
        )
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0:
        raise InputError("the query vector is all zeros or not finite: it has no direction")
    return vector / norm


def _call(method: str, subject: str | None, k: int | None, where: str | None, *more) -> str:
    args = [a for a in (subject, None if k is None else f"k={k}") if a]
    args += [m for m in more if m]
    if where is not None:
        args.append(f"where={where!r}")
    return f"{method}({', '.join(args)})"


def _read_manifest(lake) -> str | None:
    try:
        return lake.read_text(f"{_index.INDEX_DIR}/{_index.MANIFEST}")
    except OSError:
        return None


def _index_manifest_text(index: _index.Index) -> str:
    """The manifest `index` was loaded from, as its file holds it (kept on the index: every
    search compares it with the published one)."""
    import json

    text = getattr(index, "_manifest_text", None)
    if text is None:
        text = json.dumps(index.manifest, indent=2) + "\n"
        index._manifest_text = text  # type: ignore[attr-defined]
    return text


__all__ = ["Miner", "open"]
