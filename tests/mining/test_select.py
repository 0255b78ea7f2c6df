"""diverse picks spread-out scenes; save writes selections and mined events exactly once."""

from __future__ import annotations

import numpy as np
import pytest

import mining
from flywheel.errors import InputError


def test_k_center_covers_every_cluster_before_repeating_one():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(6, 16))
    sizes = [40, 5, 30, 3, 60, 8]  # unbalanced on purpose: big clusters must not win twice
    points = np.vstack(
        [c + 0.05 * rng.normal(size=(s, 16)) for c, s in zip(centres, sizes, strict=True)]
    )
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    cluster = np.repeat(np.arange(6), sizes)
    picked, gaps = mining.k_center(points.astype(np.float32), 6)
    assert sorted(cluster[picked]) == list(range(6))
    assert np.all(np.diff(gaps[1:]) <= 1e-6)  # each pick covers less new ground than the last


def test_diverse_on_the_lake(base_lake):
    miner = mining.open(base_lake)
    everything = miner.sql("SELECT scene_id FROM scenes")
    result = miner.diverse(everything, n=10)
    assert len(result) == 10 and result.scene_id.is_unique
    assert list(result["rank"]) == list(range(1, 11))
    # more spread out than the 10 most similar scenes to its first pick
    vectors = miner.catalog().vectors

    def spread(ids):
        rows = [miner.catalog().row(s) for s in ids]
        sims = vectors[rows] @ vectors[rows].T
        return 1 - sims[np.triu_indices(len(rows), 1)].mean()

    near = miner.similar(result.scene_id[0], k=9)
    assert spread(result.scene_id) > spread([result.scene_id[0], *near.scene_id])
    weighted = miner.diverse(miner.rare(k=30), n=5, weight="score")
    assert len(weighted) == 5 and weighted.attrs["query"].endswith("weight='score')")
    with pytest.raises(InputError, match="weight column"):
        miner.diverse(everything, n=3, weight="nope")
    with pytest.raises(InputError, match="not in the lake"):
        miner.diverse(["nope-00001"], n=3)


def test_save_replace_and_events(lake_copy):
    miner = mining.open(lake_copy)
    first = miner.rare(k=5)
    miner.save("odd-ones", first)
    saved = miner.sql("SELECT * FROM selections ORDER BY rank")
    assert list(saved.scene_id) == list(first.scene_id)
    assert list(saved["rank"]) == [1, 2, 3, 4, 5] and (saved["query"] == "rare(k=5)").all()
    assert np.allclose(saved.score, first.score)
    assert str(saved.created_at.dt.tz) in ("UTC", "Etc/UTC")

    with pytest.raises(InputError, match=r"already exists.*replace=True"):
        miner.save("odd-ones", miner.rare(k=8))
    assert len(miner.sql("SELECT * FROM selections")) == 5  # unchanged

    second = miner.rare(k=8)
    miner.save("odd-ones", second, replace=True)
    assert list(miner.sql("SELECT scene_id FROM selections ORDER BY rank").scene_id) == list(
        second.scene_id
    )
    mined = miner.sql("SELECT entity_id, \"at\" FROM events WHERE stage = 'mined'")
    assert sorted(mined.entity_id) == sorted(second.scene_id)  # once per scene, no duplicates
    # a scene kept through the replace keeps the time it was first mined
    at = mined.set_index("entity_id")["at"]
    new = [s for s in second.scene_id if s not in set(first.scene_id)]
    assert new and at[list(first.scene_id)].max() < at[new].min()

    miner.save("other", second.head(2))
    assert miner.selections() == ["odd-ones", "other"]
    back = miner.selection("odd-ones")
    assert list(back.scene_id) == list(second.scene_id)
    picked = miner.diverse("odd-ones", n=3)
    assert set(picked.scene_id) <= set(second.scene_id)


def test_a_replace_keeps_the_mined_time_of_scenes_it_drops(lake_copy):
    miner = mining.open(lake_copy)
    ids = list(miner.sql("SELECT scene_id FROM scenes ORDER BY scene_id").scene_id)
    miner.save("batch", ids[:3])
    first = miner.sql("SELECT entity_id, \"at\" FROM events WHERE stage = 'mined'")
    miner.save("batch", ids[3:5], replace=True)  # the first three were mined all the same
    miner.save("batch", ids[3:5], replace=True)  # and a repeat adds nothing
    mined = miner.sql("SELECT entity_id, \"at\" FROM events WHERE stage = 'mined'")
    assert sorted(mined.entity_id) == ids[:5]  # each once
    times = mined.set_index("entity_id")["at"]
    assert times[ids[:3]].tolist() == first.set_index("entity_id")["at"][ids[:3]].tolist()
    assert list(miner.selection("batch").scene_id) == ids[3:5]


def test_save_refuses_bad_input(lake_copy):
    miner = mining.open(lake_copy)
    with pytest.raises(InputError, match="not usable"):
        miner.save("../escape", ["x"])
    with pytest.raises(InputError, match="not in the lake"):
        miner.save("ok", ["no-such-scene"])
    with pytest.raises(InputError, match="empty"):
        miner.save("ok", [])
    with pytest.raises(InputError, match="no selection"):
        miner.selection("missing")
    assert miner.selections() == []


def test_public_surface():
    assert mining.__all__ == [
        "FLAT_MAX",
        "KINDS",
        "SHARD_SIZE",
        "Gallery",
        "Index",
        "Miner",
        "build_index",
        "check_where",
        "choose_kind",
        "k_center",
        "load_index",
        "open",
        "publish_index",
    ]
    assert callable(mining.open) and mining.Miner.similar.__doc__
