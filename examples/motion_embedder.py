"""A wide scene embedder written as a function of one scene's rows: 768 numbers per scene.

It stands where a learned encoder (a CLIP-like image model, a trajectory transformer) would:
the ego's speed, acceleration and yaw-rate profiles over the scene, and how close each kind of
object comes over time, pass through a fixed random layer (seeded, so every worker and every
run gives the same vector). Scenes that move alike and meet the same traffic get close vectors.

    PYTHONPATH=examples flywheel ingest drives/ --embedder motion_embedder:motion --force

(`--force`: a lake holds one embedding version; re-ingest every log with the new embedder.)
"""

from __future__ import annotations

import numpy as np

from ingest.embed import SceneRows, scene_embedder

DIM = 768
STEPS = 32  # samples of each ego profile across the scene
BINS = 8  # time bins of the object profiles
CATEGORIES = ("car", "truck", "bus", "motorcycle", "pedestrian", "cyclist", "animal", "other")
SCALES = {"speed": 20.0, "accel": 4.0, "yaw_rate": 0.3}  # physical scales: m/s, m/s², rad/s
# version names the layout and the seed of the random layer: change either, change the version
SEED = 7
VERSION = f"motion-v1-s{SEED}-d{DIM}"
_INPUTS = len(SCALES) * STEPS + len(CATEGORIES) * BINS
_WEIGHTS = np.random.default_rng(SEED).normal(0.0, 1.0 / np.sqrt(_INPUTS), (_INPUTS, DIM))


def _profiles(rows: SceneRows) -> np.ndarray:
    start, end = rows.scene["start_ns"], rows.scene["end_ns"]
    grid = np.linspace(start, end, STEPS)
    ego = []
    for column, scale in SCALES.items():
        if rows.ego is None or rows.ego.num_rows == 0:
            ego.append(np.zeros(STEPS))
            continue
        t = rows.ego.column("t_ns").to_numpy()
        values = np.nan_to_num(np.asarray(rows.ego.column(column).to_numpy(), float))
        ego.append(np.tanh(np.interp(grid, t, values) / scale))
    near = np.zeros((len(CATEGORIES), BINS))  # closeness 10 / (10 + metres), per time bin
    if rows.objects is not None and rows.objects.num_rows:
        t = rows.objects.column("t_ns").to_numpy()
        which = np.minimum(((t - start) * BINS) // max(end - start, 1), BINS - 1)
        distance = np.nan_to_num(np.asarray(rows.objects.column("distance").to_numpy(), float))
        kinds = np.asarray(rows.objects.column("category").to_pylist(), dtype=object)
        for c, name in enumerate(CATEGORIES):
            mine = kinds == name if name != "other" else ~np.isin(kinds, CATEGORIES[:-1])
            if mine.any():
                np.maximum.at(near[c], which[mine], 10.0 / (10.0 + np.maximum(distance[mine], 0)))
    return np.concatenate([*ego, near.ravel()])


@scene_embedder(version=VERSION, dim=DIM)
def motion(rows: SceneRows) -> np.ndarray:
    """768 numbers for one scene (ingest normalises them to unit length)."""
    return np.tanh(3.0 * (_profiles(rows) @ _WEIGHTS))
