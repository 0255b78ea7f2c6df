"""Scene embeddings: one fixed-length float32 vector per scene, for similarity search and rarity.

The default, `FeatureEmbedder`, turns a scene's features (ingest.scenes.SCENE_FEATURES) and
tags into a vector with fixed transforms only, so a scene's vector depends on that scene alone
and parallel ingest writes identical rows. Every lake holds one `embedding_version`; change the
embedder and re-ingest with `--force`.

Plugging in your own model (docs/embedders.md walks through one, 768 numbers wide):

- as a function of one scene's rows, decorated with `scene_embedder(version, dim)`: it gets a
  `SceneRows` (the scene's `scenes` row, and the log's ego/objects/gnss/imu rows inside the
  scene's window) and returns `dim` numbers;
- or as a class (or a factory returning an object) with ``version: str``, ``dim: int`` and
  ``embed(scenes: pyarrow.Table) -> numpy.ndarray`` of shape ``(scenes.num_rows, dim)``,
  optionally ``tables`` (names of log tables) to get ``embed(scenes, rows)`` with the log's
  tables.

Either way the vector is a pure function of its scene (no batch statistics), ``version``
changes whenever the vector's meaning changes (include the dim), and the embedder lives in an
importable package, named as ``package.module:attr``, either on the command line,
``flywheel ingest drives/ --embedder mypkg.embedders:clip``, or in ``flywheel.toml``::

    [ingest]
    embedder = "mypkg.embedders:clip"

>>> embedder = load_embedder(None)
>>> embedder.version, embedder.dim
('features-v1-d35', 35)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from flywheel.errors import ConfigError
from ingest.scenes import SCENE_FEATURES, TAGS


@runtime_checkable
class Embedder(Protocol):
    """What ingest needs from an embedder: a version, a dimension and a batch `embed`."""

    version: str
    dim: int

    def embed(self, scenes: pa.Table) -> np.ndarray:
        """One row of `dim` floats per scene, each row computed from that scene alone."""
        ...


# --- the default embedder's layout -----------------------------------------------------------
# Tags weigh most, so scenes with the same event end up close whatever the traffic around
# them; the rest of the vector orders scenes within an event type. Rare tags weigh more, so
# animal/unknown scenes sit far from everything else.
TAG_WEIGHTS = {
    "hard_brake": 2.0,
    "near_miss": 1.25,  # often accompanies another event: weigh it less than the event itself
    "pedestrian_in_path": 2.0,
    "cyclist_in_path": 2.0,
    "cut_in": 2.0,
    "animal": 2.5,
    "unknown_object": 2.5,
    "stopped": 0.75,  # context, not events
    "high_speed": 0.75,
    "sharp_turn": 0.75,
    "night": 0.5,
}


def _squash(scale: float):
    """x -> tanh(x / scale): linear below `scale`, saturating above (a physical constant)."""
    return lambda x: np.tanh(x / scale)


def _count(x):
    """Counts: log1p then tanh, so 1 vs 0 objects matters more than 21 vs 20."""
    return np.tanh(np.log1p(np.maximum(x, 0.0)) / 2.0)


def _closeness(scale: float):
    """A distance or time -> 1 at zero, 1/2 at `scale`, 0 when null (nothing there)."""
    return lambda x: scale / (scale + np.maximum(x, 0.0))


KINEMATICS = (  # (column, transform, weight); null (no ego samples) -> 0
    ("max_speed", _squash(20.0), 0.6),  # m/s; urban 10-15, highway 25-35
    ("mean_speed", _squash(20.0), 0.4),
    ("max_decel", _squash(4.0), 0.8),  # m/s²; 4 is a hard brake
    ("max_jerk", _squash(10.0), 0.4),  # m/s³
    ("max_abs_yaw_rate", _squash(0.3), 0.5),  # rad/s; 0.3 is a sharp turn
    ("max_lateral_accel", _squash(3.0), 0.5),  # m/s²; 3 is brisk cornering
)
INTERACTION = (  # null (nothing seen / nothing in the path / nothing closing in) -> 0
    ("n_tracks", _count, 0.5),
    ("n_in_path", _count, 0.6),
    ("min_object_distance", _closeness(10.0), 0.5),  # m
    ("min_in_path_distance", _closeness(15.0), 0.6),  # m
    ("min_ttc_s", _closeness(2.0), 0.8),  # s
    ("max_track_lateral_speed", _squash(2.0), 0.5),  # m/s; a walking pedestrian ~1.4
)
CATEGORIES = (  # distinct tracks per category; rare classes weigh more
    ("n_cars", _count, 0.4),
    ("n_trucks", _count, 0.4),
    ("n_buses", _count, 0.4),
    ("n_motorcycles", _count, 0.5),
    ("n_pedestrians", _count, 0.6),
    ("n_cyclists", _count, 0.6),
    ("n_animals", _count, 1.5),
    ("n_other", _count, 1.5),
)
HOUR_WEIGHT = 0.3  # time of day as a point on a circle (23:00 is close to 01:00)
MISSING_WEIGHT = 0.75  # indicators: no ego samples / no objects in the window


class FeatureEmbedder:
    """The default embedder: fixed transforms of scene features and tags, L2-normalised.

    Layout (``dim`` = 35), each block scaled by its weights above:
    tags one-hot in ingest.scenes.TAGS order (11) · kinematics (6) · interaction (6) ·
    per-category track counts (8) · sin/cos of the local hour (2) · indicators "no ego
    samples" and "no objects" (2). Null features become 0, which for the closeness and
    urgency dimensions means "nothing there"; the indicators tell "no data" apart.

    >>> from ingest.scenes import build_scenes
    >>> FeatureEmbedder().embed(build_scenes("log", None, None)).shape
    (0, 35)
    """

    dim = len(TAGS) + len(KINEMATICS) + len(INTERACTION) + len(CATEGORIES) + 2 + 2
    version = f"features-v1-d{dim}"

    def embed(self, scenes: pa.Table) -> np.ndarray:
        missing = [c for c in (*SCENE_FEATURES, "tags") if c not in scenes.column_names]
        if missing:
            raise ConfigError(
                f"{self.version} needs the scene columns {missing}; build the table with "
                "ingest.scenes.build_scenes"
            )
        n = scenes.num_rows
        blocks = [_tag_block(scenes.column("tags"), n)]
        for spec in (KINEMATICS, INTERACTION, CATEGORIES):
            for column, transform, weight in spec:
                value = _floats(scenes, column)
                with np.errstate(invalid="ignore", over="ignore"):
                    encoded = np.where(np.isnan(value), 0.0, transform(np.nan_to_num(value)))
                blocks.append(weight * encoded[:, None])
        angle = 2 * np.pi * np.nan_to_num(_floats(scenes, "start_hour_local")) / 24.0
        blocks.append(HOUR_WEIGHT * np.column_stack([np.sin(angle), np.cos(angle)]))
        no_ego = ~(_floats(scenes, "n_ego_samples") > 0)
        no_objects = ~(_floats(scenes, "n_objects") > 0)
        blocks.append(MISSING_WEIGHT * np.column_stack([no_ego, no_objects]).astype(np.float64))
        vectors = np.hstack(blocks) if n else np.zeros((0, self.dim))
        return _normalise(vectors).astype(np.float32)

    def __repr__(self) -> str:
        return f"FeatureEmbedder(version={self.version!r})"


# The log tables a per-scene embedder sees, cut to each scene's window.
LOG_TABLES = ("ego", "objects", "gnss", "imu")


@dataclass(frozen=True)
class SceneRows:
    """One scene as a per-scene embedder sees it: its row of `scenes` (features, tags,
    `start_ns`/`end_ns`, `keyframe_t_ns`), and each log table's rows with `t_ns` in the
    scene's window (None when the log has no such table)."""

    scene: dict[str, Any]
    ego: pa.Table | None
    objects: pa.Table | None
    gnss: pa.Table | None
    imu: pa.Table | None


class SceneEmbedder:
    """An embedder made of a function of one scene's rows (see `scene_embedder`)."""

    tables = LOG_TABLES

    def __init__(self, function: Callable[[SceneRows], Any], version: str, dim: int) -> None:
        self.function, self.version, self.dim = function, version, dim

    def embed(self, scenes: pa.Table, rows: Mapping[str, pa.Table | None] | None = None):
        rows = rows or {}
        windows = {name: _Windows(rows.get(name)) for name in LOG_TABLES}
        starts = scenes.column("start_ns").to_numpy()
        ends = scenes.column("end_ns").to_numpy()
        out = np.zeros((scenes.num_rows, self.dim), np.float64)
        for i, scene in enumerate(scenes.to_pylist()):
            parts = {name: w.cut(starts[i], ends[i]) for name, w in windows.items()}
            out[i] = np.asarray(self.function(SceneRows(scene, **parts)), np.float64)
        return out

    def __repr__(self) -> str:
        return f"SceneEmbedder({self.function.__qualname__}, version={self.version!r})"


def scene_embedder(version: str, dim: int) -> Callable[[Callable[[SceneRows], Any]], SceneEmbedder]:
    """Make an embedder of a function from one scene's rows (`SceneRows`) to `dim` numbers.

    >>> @scene_embedder(version="speed-v1-d2", dim=2)
    ... def speed(rows):
    ...     mean = 0.0 if rows.ego is None else float(rows.ego["speed"].to_numpy().mean())
    ...     return [mean, 1.0]
    >>> speed.version, speed.dim
    ('speed-v1-d2', 2)
    """
    return lambda function: SceneEmbedder(function, version, dim)


class _Windows:
    """A log table sorted by `t_ns`, cut into scene windows by binary search."""

    def __init__(self, table: pa.Table | None) -> None:
        if table is not None and table.num_rows and "t_ns" in table.column_names:
            t = table.column("t_ns").to_numpy()
            order = np.argsort(t, kind="stable")
            self.table: pa.Table | None = table.take(order)
            self.t = t[order]
        else:
            self.table, self.t = None, np.zeros(0, np.int64)

    def cut(self, start: int, end: int) -> pa.Table | None:
        if self.table is None:
            return None
        lo, hi = np.searchsorted(self.t, [start, end], side="left")
        return self.table.slice(int(lo), int(hi - lo))


def _floats(scenes: pa.Table, column: str) -> np.ndarray:
    values = scenes.column(column).cast(pa.float64()).to_numpy()
    return np.asarray(values, dtype=np.float64)


def _tag_block(tags: pa.ChunkedArray, n: int) -> np.ndarray:
    block = np.zeros((n, len(TAGS)))
    if n == 0:
        return block
    tags = tags.combine_chunks()
    offsets = np.asarray(tags.offsets.to_numpy(), dtype=np.int64)
    values = np.asarray(tags.values.to_numpy(zero_copy_only=False), dtype=object)
    rows = np.repeat(np.arange(n), np.diff(offsets))
    values = values[offsets[0] : offsets[-1]]
    for column, tag in enumerate(TAGS):  # a loop over the 11 tags, not over rows
        block[rows[values == tag], column] = TAG_WEIGHTS[tag]
    return block


def _normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; all-zero rows stay zero."""
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
    return vectors / np.where(norms > 0, norms, 1.0)[:, None]


def load_embedder(spec: str | None = None) -> Embedder:
    """The embedder named by `spec` ("package.module:attr"), or FeatureEmbedder for None.

    `attr` may be a class or a factory (called with no arguments) or a ready object.

    >>> load_embedder("ingest.embed:FeatureEmbedder").version
    'features-v1-d35'
    """
    if spec is None or not str(spec).strip():
        return FeatureEmbedder()
    module_name, sep, attr = str(spec).strip().partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(
            f"embedder {spec!r} is not of the form 'package.module:attr' "
            "(e.g. --embedder mypkg.embedders:MyEmbedder)",
            spec=spec,
        )
    try:
        target = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"embedder {spec!r}: cannot import {module_name!r} ({exc}); install the package "
            "that provides it in this environment",
            spec=spec,
        ) from exc
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ConfigError(
                f"embedder {spec!r}: {module_name!r} has no attribute {attr!r}", spec=spec
            )
        target = getattr(target, part)
    if isinstance(target, type) or (callable(target) and not _looks_like_embedder(target)):
        try:
            target = target()
        except Exception as exc:
            raise ConfigError(
                f"embedder {spec!r}: calling it failed: {type(exc).__name__}: {exc}", spec=spec
            ) from exc
    if not _looks_like_embedder(target):
        raise ConfigError(
            f"embedder {spec!r} gave {type(target).__name__}, which is not an embedder: it needs "
            "`version` (non-empty str), `dim` (positive int) and `embed(scenes)`",
            spec=spec,
        )
    return target


def _looks_like_embedder(obj: object) -> bool:
    version, dim = getattr(obj, "version", None), getattr(obj, "dim", None)
    return (
        isinstance(version, str)
        and bool(version)
        and isinstance(dim, int)
        and not isinstance(dim, bool)
        and dim > 0
        and callable(getattr(obj, "embed", None))
    )


def add_embedding(
    scenes: pa.Table, embedder: Embedder, rows: Mapping[str, pa.Table | None] | None = None
) -> pa.Table:
    """`scenes` with `embedding` (list<float32>, unit L2 norm) and `embedding_version` appended.

    `rows` holds the log's tables (ego, objects, ...), given to an embedder that names
    `tables` it reads.

    The embedder's vectors are checked (one row of `dim` finite numbers per scene) and
    L2-normalised here, so a custom embedder need not normalise; a row it returns as all zeros
    stays all zeros (it has no direction). An empty table is not passed to the embedder.
    Existing embedding columns are replaced.

    >>> from ingest.scenes import build_scenes
    >>> add_embedding(build_scenes("log", None, None), FeatureEmbedder()).column_names[-2:]
    ['embedding', 'embedding_version']
    """
    n, dim, version = scenes.num_rows, int(embedder.dim), str(embedder.version)
    if n:
        if getattr(embedder, "tables", None):
            wanted = {t: (rows or {}).get(t) for t in embedder.tables}  # type: ignore[attr-defined]
            vectors = np.asarray(embedder.embed(scenes, wanted))  # type: ignore[call-arg]
        else:
            vectors = np.asarray(embedder.embed(scenes))
        if vectors.shape != (n, dim):
            raise ConfigError(
                f"embedder {version!r} returned an array of shape {vectors.shape} for {n} "
                f"scenes; expected ({n}, {dim}): its `dim` and `embed` disagree",
                version=version,
            )
        if not np.issubdtype(vectors.dtype, np.number):
            raise ConfigError(
                f"embedder {version!r} returned {vectors.dtype} values; expected numbers",
                version=version,
            )
        bad = ~np.isfinite(vectors).all(axis=1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            where = scenes.column("scene_id")[row] if "scene_id" in scenes.column_names else row
            raise ConfigError(
                f"embedder {version!r} returned NaN or infinite values for scene {where} "
                f"({int(bad.sum())} of {n} rows); fix the embedder",
                version=version,
            )
        vectors = _normalise(vectors).astype(np.float32)
    else:
        vectors = np.zeros((0, dim), np.float32)
    offsets = pa.array(np.arange(0, n * dim + 1, dim, dtype=np.int32) if n else [0], pa.int32())
    column = pa.ListArray.from_arrays(offsets, pa.array(vectors.ravel(), pa.float32()))
    for name in ("embedding", "embedding_version"):
        if name in scenes.column_names:
            scenes = scenes.drop_columns([name])
    scenes = scenes.append_column("embedding", column)
    return scenes.append_column("embedding_version", pa.array([version] * n, pa.string()))


__all__ = [
    "Embedder",
    "FeatureEmbedder",
    "SceneEmbedder",
    "SceneRows",
    "add_embedding",
    "load_embedder",
    "scene_embedder",
]
