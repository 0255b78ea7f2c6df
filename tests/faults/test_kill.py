"""SIGKILL at random points of ingest, index building, label submission and sync, then a rerun.

Each kill lands at a seeded random moment within 70% of the time a clean run of the same work takes
(imports excluded: the driver says when it starts working). While the victim runs and dies a
reader keeps querying the lake; after the rerun the lake must equal a clean run's.
"""

from __future__ import annotations

import random
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from flywheel.lake import Lake
from tests.faults.conftest import Reader, run, start

KILLS = 4


def snapshot(lake: Path, tables: tuple[str, ...], drop: tuple[str, ...] = ()) -> dict:
    """Every published row per table (minus columns stamped with the wall clock), sorted."""
    con = Lake(lake).connect()
    out = {}
    for table in tables:
        data = con.sql(f"SELECT * FROM {table}").to_arrow_table()
        data = data.drop_columns([c for c in drop if c in data.column_names])
        out[table] = sorted(repr(sorted(r.items())) for r in data.to_pylist())
    return out


def kill_and_rerun(op, lake: Path, args, duration: float, rng: random.Random) -> list[str]:
    """Start `op`, SIGKILL it at a random moment, rerun it to the end; what the reader saw."""
    with Reader(lake) as reader:
        process = start(op, lake, *args)
        time.sleep(rng.uniform(0, 0.7 * duration))  # margin: a run may be faster than the clean one
        process.kill()
        process.wait()
        time.sleep(0.05)  # a few reads of the state the kill left
    assert reader.reads > 0
    if process.returncode != -signal.SIGKILL:
        reader.errors.append(f"finished before the kill (exit {process.returncode})")
    run(op, lake, *args)
    return reader.errors


INGEST_TABLES = ("logs", "ego", "gnss", "imu", "objects", "scenes", "events", "quarantine")


def test_sigkill_ingest(drives, tmp_path, faults):
    clean = tmp_path / "clean"
    duration = run("ingest", clean, drives)
    expected = snapshot(clean, INGEST_TABLES, drop=("ingested_at", "at"))
    rng, lost = random.Random(1), 0
    for i in range(KILLS):
        lake = tmp_path / f"killed-{i}"
        errors = kill_and_rerun("ingest", lake, [drives], duration, rng)
        assert errors == []
        lost += snapshot(lake, INGEST_TABLES, drop=("ingested_at", "at")) != expected
        assert not list(lake.rglob("*.tmp"))
    faults.record("SIGKILL ingest at a random point, rerun", KILLS, lost)
    assert lost == 0


@pytest.fixture(scope="module")
def vector_lake(tmp_path_factory) -> Path:
    """40,000 scenes with random unit embeddings (enough for an HNSW build worth killing)."""
    root = tmp_path_factory.mktemp("vectors") / "lake"
    lake, n, dim = Lake(root), 40_000, 35
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"v-{i:06d}" for i in range(n)]
    lake.write(
        "scenes",
        pa.table(
            {
                "scene_id": ids,
                "log_id": ["vlog"] * n,
                "start_ns": np.arange(n, dtype=np.int64) * 10**10,
                "end_ns": np.arange(1, n + 1, dtype=np.int64) * 10**10,
                "max_speed": np.zeros(n),
                "min_accel": np.zeros(n),
                "min_object_distance": np.zeros(n),
                "n_tracks": np.zeros(n, dtype=np.int64),
                "n_pedestrians": np.zeros(n, dtype=np.int64),
                "n_vehicles": np.zeros(n, dtype=np.int64),
                "tags": pa.array([[]] * n, pa.list_(pa.string())),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim).cast(
                    pa.list_(pa.float32())
                ),
                "embedding_version": ["random-v1"] * n,
            }
        ),
        name="vlog",
    )
    lake.write(
        "logs",
        pa.table(
            {
                "log_id": ["vlog"],
                "source_uri": ["test://vlog"],
                "bytes": [0],
                "message_count": [0],
                "start_ns": [0],
                "end_ns": [n * 10**10],
                "ingested_at": pa.array([0], pa.timestamp("us", tz="UTC")),
                "n_scenes": [n],
            }
        ),
        name="vlog",
    )
    return root


def _neighbours(lake: Path, queries: list[str]) -> list[list[str]]:
    import mining

    miner = mining.open(lake)
    return [list(miner.similar(q, k=10)["scene_id"]) for q in queries]


def test_sigkill_index_build(vector_lake, tmp_path, faults):
    import mining

    clean = tmp_path / "clean"
    shutil.copytree(vector_lake, clean)
    duration = run("index", clean, "hnsw", "10000")  # four shards: kills land between them
    queries = [f"v-{i:06d}" for i in range(0, 40_000, 4000)]
    expected = _neighbours(clean, queries)
    exact = mining.open(clean)
    rng, lost = random.Random(2), 0
    for i in range(KILLS):
        lake = tmp_path / f"killed-{i}"
        shutil.copytree(vector_lake, lake)
        errors = kill_and_rerun("index", lake, ["hnsw", "10000"], duration, rng)
        assert errors == []
        index = mining.load_index(lake)
        assert index is not None and index.kind == "hnsw" and index.count == 40_000
        assert [s.count for s in index.shards] == [10_000] * 4
        got = _neighbours(lake, queries)
        # HNSW built twice may break ties differently: the same neighbours, or nearly
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, expected, strict=True)])
        lost += overlap < 0.9
        assert not [p for p in (lake / "_index").iterdir() if p.name.startswith(".")]
    assert exact.index().count == 40_000
    faults.record("SIGKILL index build at a random point, rerun", KILLS, lost)
    assert lost == 0


LABEL_TABLES = ("batches", "tasks", "labels", "events")
# stamped with this machine's clock (the outbox's own bookkeeping), not the vendor's
LOCAL_TIMES = ("created_at", "updated_at", "submitted_at", "approved_at", "synced_at")


def _vendor_tasks(lake: Path) -> list[str]:
    from tests.faults.driver import vendor

    return sorted(u.key for u in vendor(str(lake)).changes(None)[0])


def test_sigkill_label_submit(selection_lake, tmp_path, faults):
    clean = tmp_path / "clean"
    shutil.copytree(selection_lake, clean)
    duration = run("submit", clean, "all")
    expected_keys = _vendor_tasks(clean)
    assert len(expected_keys) == len(set(expected_keys)) > 10
    rng, lost = random.Random(3), 0
    for i in range(KILLS):
        lake = tmp_path / f"killed-{i}"
        shutil.copytree(selection_lake, lake)
        errors = kill_and_rerun("submit", lake, ["all"], duration, rng)
        assert errors == []
        keys = _vendor_tasks(lake)
        # every scene at the vendor exactly once, in the same batches as a clean run
        lost += keys != expected_keys
    faults.record("SIGKILL label submit at a random point, rerun", KILLS, lost)
    assert lost == 0


def test_sigkill_label_sync(selection_lake, tmp_path, faults):
    import datetime as dt

    from tests.faults.driver import vendor

    ready = tmp_path / "submitted"
    shutil.copytree(selection_lake, ready)
    run("submit", ready, "all")
    vendor(str(ready)).advance(dt.timedelta(days=3))  # every task done at the vendor
    clean = tmp_path / "clean"
    shutil.copytree(ready, clean)
    duration = run("sync", clean)
    expected = snapshot(clean, LABEL_TABLES, drop=LOCAL_TIMES)
    assert expected["labels"]
    rng, lost = random.Random(4), 0
    for i in range(KILLS):
        lake = tmp_path / f"killed-{i}"
        shutil.copytree(ready, lake)
        errors = kill_and_rerun("sync", lake, [], duration, rng)
        assert errors == []
        lost += snapshot(lake, LABEL_TABLES, drop=LOCAL_TIMES) != expected
    faults.record("SIGKILL label sync at a random point, rerun", KILLS, lost)
    assert lost == 0
