"""similar, rare and filtered search on a generated lake with planted events."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mining
from flywheel.errors import InputError

HARD_BRAKE = "SELECT scene_id FROM scenes WHERE list_contains(tags, 'hard_brake')"


@pytest.fixture(scope="module")
def miner(base_lake, tmp_path_factory):
    import shutil

    target = tmp_path_factory.mktemp("search") / "lake"
    shutil.copytree(base_lake, target)
    return mining.open(target)


def planted_scenes(miner, truth, kinds) -> set[str]:
    """The scene of each planted event of one of `kinds` (generator truth): the scene holding
    most of its window (an object in the path is in it from 80 m off, so its window may begin
    a few samples into the scene before)."""
    events = pd.DataFrame([e for e in truth["events"] if e["kind"] in kinds])
    scenes = miner.sql(
        "SELECT s.scene_id, s.start_ns, s.end_ns, regexp_extract(l.source_uri, '[^/]+$') AS log "
        "FROM scenes s JOIN logs l USING (log_id)"
    )
    events["event"] = range(len(events))
    joined = scenes.merge(events, on="log", suffixes=("", "_event"))
    joined["overlap"] = np.minimum(joined.end_ns, joined.end_ns_event) - np.maximum(
        joined.start_ns, joined.start_ns_event
    )
    joined = joined[joined.overlap > 0].sort_values("overlap", ascending=False)
    return set(joined.drop_duplicates("event").scene_id)


def test_similar_to_a_hard_brake_finds_hard_brakes(miner):
    ids = miner.sql(HARD_BRAKE).scene_id.tolist()
    scenes = miner.sql("SELECT count(*) AS n FROM scenes").n[0]
    assert len(ids) >= 3
    shares = []
    for scene_id in ids:
        result = miner.similar(scene_id, k=3)
        assert scene_id not in set(result.scene_id)  # the query scene is excluded
        assert list(result["rank"]) == [1, 2, 3]
        assert result.score.is_monotonic_decreasing
        found = sum("hard_brake" in tags for tags in result.tags)
        shares.append(found / min(3, len(ids) - 1))  # of the other hard brakes, as many fit
    # measured with this seed: every other hard brake among the 3 nearest, for each of the 3,
    # against a base rate of 3 in 72 scenes
    assert np.mean(shares) >= 0.8, shares
    assert min(shares) >= 0.5, shares
    assert len(ids) / scenes < 0.1


def test_similar_to_a_raw_vector(miner):
    scene_id = miner.sql(HARD_BRAKE).scene_id[0]
    vector = miner.catalog().vectors[miner.catalog().row(scene_id)]
    result = miner.similar(list(vector * 3.0), k=5)  # any length: it is normalised
    assert result.scene_id[0] == scene_id  # a vector query excludes nothing
    assert result.score[0] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(InputError, match="numbers"):
        miner.similar([1.0, 2.0], k=5)


def test_result_frame_is_a_readable_dataframe(miner):
    result = miner.similar(miner.sql(HARD_BRAKE).scene_id[0], k=4, where="max_speed > 0")
    assert list(result.columns[:8]) == [
        "scene_id",
        "score",
        "rank",
        "log_id",
        "start",
        "start_ns",
        "end_ns",
        "tags",
    ]
    assert "embedding" not in result.columns
    assert result.attrs["query"].startswith("similar(") and "max_speed > 0" in result.attrs["query"]
    assert repr(result) and result._repr_html_()  # reprs never raise


def test_unknown_scene_is_an_input_error(miner):
    with pytest.raises(InputError, match="not in the lake"):
        miner.similar("no-such-scene", k=3)
    with pytest.raises(InputError, match="positive"):
        miner.similar(miner.sql(HARD_BRAKE).scene_id[0], k=0)


def test_rare_surfaces_planted_rare_events(miner, truth):
    rare_planted = planted_scenes(miner, truth, {"animal", "unknown_object"})
    assert len(rare_planted) >= 3
    k = max(10, 2 * len(rare_planted))  # the top of 72: a seventh
    result = miner.rare(k=k)
    top = set(result.scene_id)
    # measured with this seed: the 3 planted animal/unknown scenes rank 1, 3 and 9 of 72
    assert rare_planted <= top, (rare_planted - top, result[["scene_id", "tags"]])
    assert result.score.is_monotonic_decreasing
    assert result.attrs["query"] == f"rare(k={k})"


def test_rare_with_where_ranks_only_matching_scenes(miner):
    result = miner.rare(k=5, where="list_contains(tags, 'night')")
    assert len(result) == 5
    assert all("night" in tags for tags in result.tags)


@pytest.mark.parametrize(
    "where",
    ["n_pedestrians > 0", "list_contains(tags, 'night')", "max_speed > 20", "n_other > 0"],
)
def test_filtered_similar_returns_k_matches_when_k_exist(miner, where):
    matching = set(miner.sql(f"SELECT scene_id FROM scenes WHERE {where}").scene_id)
    query = miner.sql(HARD_BRAKE).scene_id[0]
    candidates = matching - {query}
    assert candidates
    for k in (3, len(candidates), len(candidates) + 5):
        result = miner.similar(query, k=k, where=where)
        assert len(result) == min(k, len(candidates))
        assert set(result.scene_id) <= candidates
    # and it is the exact top k of the matching scenes
    catalog = miner.catalog()
    rows = np.array(sorted(catalog.row(s) for s in candidates))
    sims = catalog.vectors[rows] @ catalog.vectors[catalog.row(query)]
    best = {catalog.ids[r] for r in rows[np.argsort(-sims)[:3]]}
    assert set(miner.similar(query, k=3, where=where).scene_id) == best


def test_filter_matching_nothing_returns_an_empty_frame(miner):
    result = miner.similar(miner.sql(HARD_BRAKE).scene_id[0], k=5, where="max_speed < -1")
    assert len(result) == 0 and "scene_id" in result.columns


def test_sql_sees_every_table(miner):
    frame = miner.sql("SELECT count(*) AS n FROM logs")
    assert isinstance(frame, pd.DataFrame) and frame.n[0] == 6
    assert len(miner.sql("SELECT * FROM selections")) == 0


def test_rarity_of_every_scene_is_cached_per_lake_snapshot(lake_copy, late_log, monkeypatch):
    import mining.miner

    direct = mining.open(lake_copy).rare(k=15)
    monkeypatch.setattr(mining.miner, "RARITY_DIRECT_MAX", 0)
    cached = mining.open(lake_copy).rare(k=15)
    assert list(cached["scene_id"]) == list(direct["scene_id"])
    np.testing.assert_allclose(cached["score"], direct["score"], rtol=1e-6)
    files = sorted((lake_copy.root / "_index").glob("rarity-10-*.npy"))
    assert len(files) == 1
    # a fresh process (a new Miner) reads it back instead of recomputing
    assert list(mining.open(lake_copy).rare(k=15)["scene_id"]) == list(direct["scene_id"])
    # new scenes change every neighbourhood: the cache is recomputed, the old file replaced
    from ingest import ingest

    ingest([late_log], lake_copy)
    fresh = mining.open(lake_copy).rare(k=15)
    monkeypatch.setattr(mining.miner, "RARITY_DIRECT_MAX", 10**9)
    assert list(fresh["scene_id"]) == list(mining.open(lake_copy).rare(k=15)["scene_id"])
    after = sorted((lake_copy.root / "_index").glob("rarity-10-*.npy"))
    assert len(after) == 1 and after != files


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_scenes_with_a_blank_embedding_are_left_out_of_similarity(lake_copy, kind, capsys):
    from sim.history import simulate_history

    miner = mining.open(lake_copy)
    real = set(miner.sql("SELECT scene_id FROM scenes").scene_id)
    before = list(miner.rare(k=10).scene_id)
    simulate_history(lake_copy, weeks=2, scenes_per_week=30)  # all-zero embeddings
    everything = set(miner.sql("SELECT scene_id FROM scenes").scene_id)
    blank = everything - real
    assert len(blank) == 60  # SQL sees them

    index = miner.build_index(kind)
    assert index.count == len(real) and sum(s.entry["blank"] for s in index.shards) == 60
    # rarity: a zero vector is not "far from everything", it has no direction at all
    assert list(miner.rare(k=10).scene_id) == before
    assert set(miner.rare(k=len(everything)).scene_id) == real
    query = sorted(real)[0]
    assert set(miner.similar(query, k=len(everything)).scene_id) == real - {query}
    assert set(miner.similar(query, k=5, where="true").scene_id) <= real
    with pytest.raises(InputError, match="all-zero embedding"):
        miner.similar(sorted(blank)[0], k=3)
    spread = miner.diverse(sorted(everything), n=5)
    assert len(spread) == 5 and set(spread.scene_id) <= real
    assert "60 candidate scenes have an all-zero embedding" in capsys.readouterr().err
    miner.save("with-history", sorted(blank)[:3])  # selections still take any scene
    assert len(miner.selection("with-history")) == 3


def test_a_batch_of_queries_gives_what_single_queries_give(miner):
    ids = miner.sql("SELECT scene_id FROM scenes ORDER BY scene_id LIMIT 5").scene_id.tolist()
    vectors = miner.catalog().vectors[miner.catalog().rows(ids)]
    for batch, where in ((ids, None), (vectors, None), (ids, "n_pedestrians > 0")):
        together = miner.similar(batch, k=4, where=where)
        for i, query in enumerate(batch):
            one = miner.similar(query, k=4, where=where)
            name = query if isinstance(query, str) else i
            part = together[together["query"] == name].drop(columns="query")
            assert part["scene_id"].tolist() == one["scene_id"].tolist()
            assert np.allclose(part["score"], one["score"]) and part["rank"].tolist() == [
                1,
                2,
                3,
                4,
            ]
    with pytest.raises(InputError, match="list of them"):
        miner.similar([], k=3)


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_the_filter_planner_keeps_recall_for_correlated_and_independent_filters(
    tmp_path, monkeypatch, kind
):
    """Many scenes allowed: each query is probed. On HNSW it goes to the selector search, the
    over-fetch or the exact scan, and every route gives the exact filtered top k; on IVF-PQ
    every query takes the selector search, widened where the filter empties its region."""
    import pyarrow as pa

    from flywheel import schemas
    from flywheel.lake import Lake
    from mining import search

    rng = np.random.default_rng(7)
    n, dim = 6000, 16
    centres = rng.normal(size=(12, dim))
    cluster = rng.integers(0, 12, n)
    vectors = centres[cluster] + 0.3 * rng.normal(size=(n, dim))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    lake = Lake(tmp_path / "lake")
    rows = {
        "scene_id": [f"s{i:05d}" for i in range(n)], "log_id": ["log"] * n,
        "start_ns": np.arange(n) * 10**10, "end_ns": (np.arange(n) + 1) * 10**10,
        "max_speed": cluster.astype(float),  # correlated with the embedding: the cluster
        "n_pedestrians": rng.integers(0, 2, n),  # independent of it
        "embedding": pa.array(list(vectors), pa.list_(pa.float32())),
        "embedding_version": ["test"] * n,
    }  # fmt: skip
    lake.write("scenes", schemas.filled(rows, schemas.SCHEMAS["scenes"], n), name="log")
    log = {"log_id": ["log"], "source_uri": ["file:///log.mcap"], "bytes": [1],
           "message_count": [1], "start_ns": [0], "end_ns": [1],
           "ingested_at": pa.array([pd.Timestamp.now(tz="UTC")], schemas.UTC_TS)}  # fmt: skip
    lake.write("logs", schemas.filled(log, schemas.SCHEMAS["logs"], 1), name="log")
    mining.build_index(lake, kind=kind)
    monkeypatch.setattr(search, "EXACT_FILTERED_MAX", 100)
    if kind == "ivfpq":  # never an exact scan of the float vectors: PQ lists, re-ranked

        def no_scan(*args, **kwargs):
            raise AssertionError("an exact scan on an IVF-PQ index")

        monkeypatch.setattr(search.Filtered, "exact", no_scan)  # so 6,000 scenes are "many"
    m = mining.open(lake)
    queries = vectors[rng.choice(n, 40)] + 0.05 * rng.normal(size=(40, dim)).astype(np.float32)
    catalog = m.catalog()
    routes_taken = set()
    for where in (
        "max_speed >= 6",
        "n_pedestrians = 1",
        "max_speed != 3",
        "hash(scene_id) % 10 = 0",
    ):
        allowed = m._mask(where)
        local = search._local_share(catalog, m.index(), queries, allowed)
        routes = local >= search.LOCAL_MIN
        routes_taken |= {
            "graph" if r else "overfetch" if s >= search.OVERFETCH_MIN_SHARE else "exact"
            for r, s in zip(routes, local, strict=True)
        }
        found = m.similar(queries, k=10, where=where)
        recalls = []
        for i, q in enumerate(queries):
            truth = search.exact(q[None, :], catalog.vectors, np.flatnonzero(allowed), 10)[1][0]
            got = catalog.rows(found[found["query"] == i]["scene_id"])
            assert len(got) == 10 and allowed[got].all(), (where, i)
            if kind == "hnsw":
                assert set(got) == set(truth), (where, i, bool(routes[i]))
            recalls.append(len(set(got) & set(truth)) / 10)
        assert np.mean(recalls) >= 0.97, (where, np.mean(recalls))
        if where == "max_speed >= 6":  # half the clusters: some queries stay in the graph
            assert routes.any() and not routes.all()
    # every route of the planner was taken (on HNSW), and each gave the exact answer
    assert routes_taken == {"graph", "overfetch", "exact"}
