"""A lake of scenes tagged at random (no logs behind them): what the label quality checks
compare labels with, at a size where a planted fault is significant."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa

from flywheel import schemas
from flywheel.lake import Lake

T0 = dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC)
MIX = {"hard_brake": 0.2, "cut_in": 0.2, "stopped": 0.1, "high_speed": 0.1}  # the rest: none


def scenes_lake(root: Path, n: int = 1500, seed: int = 4) -> Lake:
    """A lake of `n` scenes over 5 logs, tagged at random by MIX."""
    rng = np.random.default_rng(seed)
    lake = Lake(root)
    per_log = n // 5
    for i in range(5):
        log = f"log{i}"
        kinds = rng.choice([*MIX, None], per_log, p=[*MIX.values(), 1 - sum(MIX.values())])
        scenes = {
            "scene_id": [f"{log}-{k:05d}" for k in range(per_log)],
            "log_id": [log] * per_log,
            "start_ns": [k * 10**10 for k in range(per_log)],
            "end_ns": [(k + 1) * 10**10 for k in range(per_log)],
            "max_speed": [10.0] * per_log,
            "min_accel": [-1.0] * per_log,
            "min_object_distance": [None] * per_log,
            "n_tracks": [0] * per_log,
            "n_pedestrians": [0] * per_log,
            "n_vehicles": [0] * per_log,
            "tags": pa.array([[k] if k else [] for k in kinds], pa.list_(pa.string())),
            "embedding": pa.array(
                [[1.0, float(k)] for k in range(per_log)], pa.list_(pa.float32())
            ),
            "embedding_version": ["test"] * per_log,
        }
        lake.write("scenes", schemas.filled(scenes, schemas.SCHEMAS["scenes"], per_log), name=log)
        row = {"log_id": [log], "source_uri": [f"file:///{log}.mcap"], "bytes": [1],
               "message_count": [1], "start_ns": [0], "end_ns": [1],
               "ingested_at": pa.array([T0], schemas.UTC_TS)}  # fmt: skip
        lake.write("logs", schemas.filled(row, schemas.SCHEMAS["logs"], 1), name=log)
    return lake
