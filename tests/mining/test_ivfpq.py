"""The on-disk ivfpq index: PQ candidates re-ranked exactly, shards memory-mapped and searched
in parallel, filters and incremental builds as for the other kinds."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import faiss
import numpy as np
import pyarrow as pa
import pytest

import mining
from flywheel import schemas
from flywheel.lake import Lake
from ingest.embed import FeatureEmbedder
from mining.index import rerank_count

FILE_ROWS, FILES, SHARD = 10_000, 3, 15_000
K = 10


def write_part(lake: Lake, part: int, seeds: np.ndarray) -> np.ndarray:
    """One scenes file (and its published log) of unit vectors drawn around `seeds`, as
    bench/scale.py draws them; its vectors."""
    rng = np.random.default_rng(part)
    dim = seeds.shape[1]
    x = seeds[rng.integers(0, len(seeds), FILE_ROWS)] + rng.normal(0, 0.05, (FILE_ROWS, dim))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    name = f"part-{part:03d}"
    offsets = pa.array(np.arange(0, FILE_ROWS * dim + 1, dim, dtype=np.int32))
    columns = {
        "scene_id": [f"v-{part:03d}-{i:05d}" for i in range(FILE_ROWS)],
        "log_id": [name] * FILE_ROWS,
        "start_ns": np.arange(FILE_ROWS, dtype=np.int64) * 10**10,
        "end_ns": np.arange(1, FILE_ROWS + 1, dtype=np.int64) * 10**10,
        "max_speed": rng.uniform(0, 30, FILE_ROWS),
        "embedding": pa.ListArray.from_arrays(offsets, pa.array(x.ravel())),
        "embedding_version": [FeatureEmbedder.version] * FILE_ROWS,
    }
    lake.write("scenes", schemas.filled(columns, schemas.SCHEMAS["scenes"], FILE_ROWS), name=name)
    log = {
        "log_id": [name],
        "source_uri": [f"/drives/{name}.mcap"],
        "bytes": [1],
        "message_count": [1],
        "start_ns": [0],
        "end_ns": [FILE_ROWS * 10**10],
        "ingested_at": pa.array([dt.datetime.now(dt.UTC)], pa.timestamp("us", tz="UTC")),
    }
    lake.write("logs", schemas.filled(log, schemas.SCHEMAS["logs"], 1), name=name)
    return x


@pytest.fixture(scope="module")
def seeds(base_lake) -> np.ndarray:
    """The real scene embeddings of the generated lake."""
    return mining.open(base_lake).catalog().vectors.copy()


@pytest.fixture(scope="module")
def vectors_lake(seeds, tmp_path_factory) -> tuple[Lake, np.ndarray]:
    """30k vectors in 3 files, indexed as ivfpq in 2 shards of 15k (read-only)."""
    lake = Lake(tmp_path_factory.mktemp("ivfpq") / "lake")
    vectors = np.concatenate([write_part(lake, part, seeds) for part in range(FILES)])
    mining.build_index(lake, kind="ivfpq", shard_size=SHARD)
    return lake, vectors


def queries_near(seeds: np.ndarray, n: int = 100) -> np.ndarray:
    rng = np.random.default_rng(99)
    q = seeds[rng.integers(0, len(seeds), n)] + rng.normal(0, 0.05, (n, seeds.shape[1]))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def exact_top(queries, vectors, k, allowed=None):
    sims = queries @ vectors.T
    if allowed is not None:
        sims[:, ~allowed] = -np.inf
    return np.argsort(-sims, axis=1, kind="stable")[:, :k], sims


def recall(found_ids: np.ndarray, true_ids: np.ndarray) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found_ids, true_ids, strict=True)])
    )


def test_ivfpq_shards_are_pq_with_memory_mapped_vectors(vectors_lake, monkeypatch):
    lake, vectors = vectors_lake
    manifest = json.loads((lake.root / "_index" / "manifest.json").read_text())
    assert manifest["kind"] == "ivfpq" and manifest["count"] == len(vectors)
    assert [s["count"] for s in manifest["shards"]] == [SHARD, SHARD]
    for entry in manifest["shards"]:
        assert entry["files"]["vectors"].endswith(".vectors.npy")
        params = entry["params"]
        # dim 35 padded to 36 for 18 subquantizers of 2 dims
        assert (params["m"], params["pad"], params["nbits"]) == (18, 1, 8)
        assert 1 <= params["nprobe"] < params["nlist"]
    flags = []
    read = faiss.read_index
    monkeypatch.setattr(faiss, "read_index", lambda path, f=0: flags.append(f) or read(path, f))
    index = mining.load_index(lake)
    monkeypatch.undo()
    # the lists stay in the file, memory-mapped in place, not copied into memory
    assert flags == [faiss.IO_FLAG_MMAP_IFC] * 2
    assert index.kind == "ivfpq" and len(index.shards) == 2
    for shard in index.shards:
        assert isinstance(shard.vectors, np.memmap)
        assert shard.vectors.shape == (SHARD, 35) and shard.vectors.dtype == np.float32
    # every scene once, and each position's vector is that scene's
    ids = index.scene_ids
    assert sorted(ids) == sorted(
        f"v-{p:03d}-{i:05d}" for p in range(FILES) for i in range(FILE_ROWS)
    )
    row = {f"v-{p:03d}-{i:05d}": p * FILE_ROWS + i for p in range(FILES) for i in range(FILE_ROWS)}
    stored = np.concatenate([np.asarray(s.vectors) for s in index.shards])
    rows = np.array([row[s] for s in ids])
    assert np.array_equal(stored, vectors[rows])


def test_recall_and_exact_similarities(vectors_lake, seeds):
    lake, vectors = vectors_lake
    index = mining.load_index(lake)
    queries = queries_near(seeds)
    sims, positions = index.search(queries, K)
    true, exact = exact_top(queries, vectors, K)
    found = index.ids_at(positions)
    # recall@10 against brute force, by scene id (PQ candidates re-ranked exactly)
    true_ids = np.array([[_id_of(r) for r in t] for t in true])
    measured = recall(found, true_ids)
    assert measured >= 0.95, measured
    # the similarities returned are the exact cosine of the scenes returned
    rows = np.array([[_row_of(s) for s in q] for q in found])
    np.testing.assert_allclose(sims, np.take_along_axis(exact, rows, axis=1), atol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-7).all()  # best first


def _id_of(row: int) -> str:
    return f"v-{row // FILE_ROWS:03d}-{row % FILE_ROWS:05d}"


def _row_of(scene_id: str) -> int:
    _, part, i = scene_id.split("-")
    return int(part) * FILE_ROWS + int(i)


def test_fewer_candidates_lose_recall(vectors_lake, seeds, monkeypatch):
    """The re-rank is what recall rests on: with one candidate per result it drops (this
    test fails if the candidates are ignored or the PQ alone already ranks exactly)."""
    lake, vectors = vectors_lake
    index = mining.load_index(lake)
    queries = queries_near(seeds)
    true_ids = np.array([[_id_of(r) for r in t] for t in exact_top(queries, vectors, K)[0]])
    monkeypatch.setattr(mining.index, "RERANK_MIN", 0)
    monkeypatch.setattr(mining.index, "RERANK_FACTOR", 1)
    assert rerank_count(K) == K
    narrow = recall(index.ids_at(index.search(queries, K)[1]), true_ids)
    monkeypatch.undo()
    wide = recall(index.ids_at(index.search(queries, K)[1]), true_ids)
    assert narrow < wide - 0.05, (narrow, wide)


def test_filtered_search_returns_only_allowed_scenes(vectors_lake, seeds):
    lake, vectors = vectors_lake
    index = mining.load_index(lake)
    queries = queries_near(seeds, 50)
    rows = np.array([_row_of(s) for s in index.scene_ids])
    for share in (0.5, 0.05):
        allowed_rows = np.random.default_rng(7).random(len(vectors)) < share
        selector = allowed_rows[rows]  # by index position
        _, positions = index.search(queries, K, selector)
        assert (positions >= 0).all()
        assert selector[positions].all()
        found = index.ids_at(positions)
        true_ids = np.array(
            [[_id_of(r) for r in t] for t in exact_top(queries, vectors, K, allowed_rows)[0]]
        )
        measured = recall(found, true_ids)
        assert measured >= 0.95, (share, measured)


def test_miner_on_an_ivfpq_lake_finds_the_exact_nearest(vectors_lake):
    lake, _ = vectors_lake
    miner = mining.open(lake)
    catalog = miner.catalog()
    assert miner.index().kind == "ivfpq"
    picks = catalog.ids[:: len(catalog.ids) // 20][:20]
    for scene_id in picks:
        vector = catalog.vectors[catalog.row(scene_id)]
        found = miner.similar(list(vector), k=5)
        assert found.scene_id[0] == scene_id  # an in-lake vector finds its own scene first
        assert found.score[0] == pytest.approx(1.0, abs=1e-5)
        exact = np.sort(catalog.vectors @ vector)[::-1][:5]
        np.testing.assert_allclose(found.score.to_numpy(), exact, atol=1e-5)
    # a filter through the Miner: only allowed scenes, the same top 1 as exact
    result = miner.similar(picks[0], k=5, where="max_speed > 15")
    speeds = miner.sql("SELECT scene_id, max_speed FROM scenes").set_index("scene_id").max_speed
    assert (speeds[result.scene_id] > 15).all()


def test_incremental_build_keeps_ivfpq_shards(vectors_lake, seeds, tmp_path):
    shutil.copytree(
        vectors_lake[0].root, tmp_path / "lake", ignore=shutil.ignore_patterns("_locks")
    )
    lake = Lake(tmp_path / "lake")
    first = json.loads((lake.root / "_index" / "manifest.json").read_text())
    write_part(lake, FILES, seeds)
    second = mining.publish_index(lake, "ivfpq", shard_size=SHARD)
    assert second["shards_kept"] == 2 and second["shards_built"] == 1
    assert second["shards"][:2] == first["shards"]
    assert second["count"] == (FILES + 1) * FILE_ROWS
    # the new shard is searched with its own re-rank file too
    index = mining.load_index(lake)
    assert [s.vectors is not None for s in index.shards] == [True, True, True]
    present = {p.name for p in (lake.root / "_index").iterdir()}
    named = {n for s in second["shards"] for n in s["files"].values()}
    assert named | {"manifest.json"} == present
    vector = np.asarray(index.shards[2].vectors[0])
    _, positions = index.search(vector[None, :], 1)
    assert positions[0, 0] == 2 * SHARD  # the new shard's first position is itself
