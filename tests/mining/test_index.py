"""The FAISS index on disk: persisted, reloaded, crash-safe, never missing new scenes."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mining
from flywheel.errors import InputError
from flywheel.lake import Lake
from ingest import ingest
from mining import search


def test_build_persists_and_reloads(lake_copy):
    built = mining.build_index(lake_copy)
    folder = lake_copy.root / "_index"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "flat" and manifest["requested_kind"] == "auto"
    assert manifest["count"] == 72 and manifest["dim"] == 35
    assert manifest["embedding_version"] == "features-v1-d35"
    assert manifest["built_from"]["logs"] == 6 and manifest["built_from"]["scenes"] == 72
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["manifest.json", *manifest["files"].values()]
    )
    assert "_index" not in lake_copy.tables()  # underscore folders are not tables

    loaded = mining.load_index(lake_copy)
    assert loaded.kind == "flat" and loaded.count == 72
    assert list(loaded.scene_ids) == list(built.scene_ids)
    query = mining.open(lake_copy).catalog().vectors[:3]
    assert np.array_equal(loaded.search(query, 5)[1], built.search(query, 5)[1])

    # a second build replaces the first and removes its files
    again = mining.build_index(lake_copy, kind="hnsw")
    names = {p.name for p in folder.iterdir()}
    assert names == {"manifest.json", *again.manifest["files"].values()}
    assert mining.load_index(lake_copy).kind == "hnsw"


def test_a_crash_mid_build_keeps_the_old_index(lake_copy, monkeypatch):
    mining.build_index(lake_copy, kind="flat")
    real = Lake.put

    def crash(self, rel, write):
        if rel.endswith(".ids.parquet"):
            raise KeyboardInterrupt("killed mid-build")
        return real(self, rel, write)

    monkeypatch.setattr(Lake, "put", crash)
    with pytest.raises(KeyboardInterrupt):
        mining.build_index(lake_copy, kind="hnsw")
    monkeypatch.undo()
    loaded = mining.load_index(lake_copy)
    assert loaded.kind == "flat" and loaded.count == 72  # the old index, whole


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_every_kind_finds_the_same_neighbours_here(lake_copy, kind):
    miner = mining.open(lake_copy)
    scene = miner.sql("SELECT scene_id FROM scenes ORDER BY scene_id LIMIT 1").scene_id[0]
    exact = miner.similar(scene, k=5)
    miner.build_index(kind)
    assert mining.load_index(lake_copy).kind == kind
    assert list(miner.similar(scene, k=5).scene_id) == list(exact.scene_id)


def test_auto_kind_by_size():
    assert mining.choose_kind(mining.FLAT_MAX) == "flat"
    assert mining.choose_kind(mining.FLAT_MAX + 1) == "hnsw"
    with pytest.raises(InputError, match="auto, flat, ivf, hnsw"):
        mining.choose_kind(10, "annoy")


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_scenes_ingested_after_the_build_are_found(lake_copy, late_log, kind):
    miner = mining.open(lake_copy)
    miner.build_index(kind)
    assert ingest([late_log], lake_copy).exit_code == 0
    catalog = miner.catalog()  # reloads: the lake changed
    assert catalog.count > 72
    index = miner.index()
    assert index.count == 72  # not rebuilt: the tail is searched exactly instead
    late = [s for s in catalog.ids if s not in set(index.scene_ids)]
    assert late
    for scene_id in late[:4]:
        vector = catalog.vectors[catalog.row(scene_id)]
        found = miner.similar(vector, k=3)
        assert found.scene_id[0] == scene_id or found.score[0] == pytest.approx(1.0, abs=1e-6)
        assert miner.similar(scene_id, k=3).shape[0] == 3  # a late scene can be the query
    rare = miner.rare(k=catalog.count)
    assert set(rare.scene_id) == set(catalog.ids)


def test_approximate_filtered_search_never_returns_a_short_list(lake_copy, monkeypatch):
    miner = mining.open(lake_copy)
    miner.build_index("hnsw")
    monkeypatch.setattr(search, "EXACT_FILTERED_MAX", 0)  # force the FAISS ID-selector path
    where = "list_contains(tags, 'night')"
    matching = set(miner.sql(f"SELECT scene_id FROM scenes WHERE {where}").scene_id)
    query = miner.sql("SELECT scene_id FROM scenes WHERE NOT is_night LIMIT 1").scene_id[0]
    for k in (5, len(matching), len(matching) + 3):
        result = miner.similar(query, k=k, where=where)
        assert len(result) == min(k, len(matching)) and set(result.scene_id) <= matching


def test_other_embedding_version_is_rebuilt(lake_copy, capsys):
    mining.build_index(lake_copy)
    path = lake_copy.root / "_index" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["embedding_version"] = "features-v0-d35"
    path.write_text(json.dumps(manifest))
    miner = mining.open(lake_copy)
    miner.similar(miner.sql("SELECT scene_id FROM scenes LIMIT 1").scene_id[0], k=3)
    err = capsys.readouterr().err
    assert "features-v0-d35" in err and "rebuilding" in err
    assert json.loads(path.read_text())["embedding_version"] == "features-v1-d35"


def test_missing_index_is_built_on_first_search(lake_copy, capsys):
    miner = mining.open(lake_copy)
    miner.rare(k=3)
    assert "building" in capsys.readouterr().err
    assert mining.load_index(lake_copy).count == 72
