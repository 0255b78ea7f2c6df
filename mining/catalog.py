"""The scenes a miner searches: one in-memory snapshot of `scenes` (metadata and vectors).

Every mining call works on the same snapshot, with scenes in a fixed order (by `scene_id`), so
a row number means the same scene to the index, the `where` filter and the results. The
snapshot is reloaded when a `scenes` or `logs` file appears, disappears or changes, so scenes
ingested while a notebook is open are seen by the next call.

>>> Catalog.load(Lake(lake)).count
6
>>> Catalog.load(Lake(empty_lake)).count
0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from flywheel.errors import LakeError
from flywheel.lake import Lake, Snapshot

SOURCES = ("logs", "scenes")


def fingerprint(lake: Lake) -> tuple:
    """What the snapshot was read from: every published `scenes` and `logs` file, stat'ed."""
    return _fingerprint(lake.snapshot(SOURCES))


def _fingerprint(snapshot: Snapshot) -> tuple:
    return tuple(f for table in SOURCES for f in snapshot.files[table])


@dataclass
class Catalog:
    """Scene metadata (Arrow, no embedding) and unit vectors, row-aligned, ordered by id."""

    meta: pa.Table
    vectors: np.ndarray  # (count, dim) float32
    version: str | None  # the lake's embedding_version (None for an empty lake)
    source: tuple = ()
    _rows: dict[str, int] | None = field(default=None, repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, lake: Lake) -> Catalog:
        with lake.connect(snapshot=lake.snapshot(SOURCES)) as con:
            table = con.sql("SELECT * FROM scenes ORDER BY scene_id").to_arrow_table()
            source = _fingerprint(con.snapshot)  # the files read (a retry reads newer ones)
        versions = (
            sorted({v for v in table.column("embedding_version").to_pylist() if v is not None})
            if "embedding_version" in table.column_names
            else []
        )
        if len(versions) > 1:
            raise LakeError(
                f"the lake {lake.root} holds scenes of several embedding versions "
                f"({', '.join(versions)}); mining needs one: re-ingest every log with the same "
                "embedder (`flywheel ingest ... --force`)",
                versions=versions,
            )
        vectors = vectors_of(table)
        meta = table.drop_columns([c for c in ("embedding",) if c in table.column_names])
        # one chunk: take() of 10 rows from DuckDB's many chunks cost 40 ms at 1M scenes
        # (0.16 ms combined), which was most of a similar() call (bench/mining.py)
        meta = meta.combine_chunks()
        return cls(meta, vectors, versions[0] if versions else None, source)

    @property
    def count(self) -> int:
        return self.meta.num_rows

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def ids(self) -> np.ndarray:
        if "ids" not in self._cache:
            self._cache["ids"] = np.asarray(
                self.meta.column("scene_id").to_pylist() if self.count else [], dtype=object
            )
        return self._cache["ids"]

    @property
    def blank(self) -> np.ndarray:
        """Rows whose embedding is all zeros (simulated history, or an embedder that gave up):
        a zero vector has no direction, so no cosine similarity; similarity search, rarity and
        diversity leave these scenes out. SQL and selections still see them."""
        if "blank" not in self._cache:
            empty = self.count == 0 or self.vectors.size == 0
            self._cache["blank"] = (
                np.zeros(self.count, bool) if empty else ~self.vectors.any(axis=1)
            )
        return self._cache["blank"]

    @property
    def searchable(self) -> np.ndarray:
        """Rows similarity search can return: every row whose embedding is not blank."""
        if "searchable" not in self._cache:
            self._cache["searchable"] = np.flatnonzero(~self.blank)
        return self._cache["searchable"]

    def row(self, scene_id: str) -> int | None:
        """The row of `scene_id`, or None when the lake has no such scene."""
        if self._rows is None:
            self._rows = {sid: i for i, sid in enumerate(self.ids)}
        return self._rows.get(scene_id)

    def rows(self, scene_ids) -> np.ndarray:
        """Rows of many scene ids; -1 where unknown."""
        return np.fromiter(
            (self.row(s) if self.row(s) is not None else -1 for s in scene_ids), np.int64
        )


def vectors_of(table: pa.Table) -> np.ndarray:
    """The `embedding` column of `table` as one (rows, dim) float32 array, checked."""
    n = table.num_rows
    if n == 0 or "embedding" not in table.column_names:
        return np.zeros((0, 0), np.float32)
    column = table.column("embedding").combine_chunks()
    if column.null_count:
        bad = table.column("scene_id").filter(column.is_null()).to_pylist()[:3]
        raise LakeError(
            f"scenes {bad} have no embedding; re-ingest their logs with `flywheel ingest --force`"
        )
    offsets = np.asarray(column.offsets.to_numpy(), dtype=np.int64)
    lengths = np.diff(offsets)
    if lengths.min() != lengths.max():
        raise LakeError(
            f"scene embeddings have different lengths ({lengths.min()} to {lengths.max()}); "
            "re-ingest every log with the same embedder (`flywheel ingest ... --force`)"
        )
    values = column.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]]
    return np.ascontiguousarray(values.reshape(n, int(lengths[0])), dtype=np.float32)
