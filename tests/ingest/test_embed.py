"""The scene embedder: fixed layout, per-scene determinism, similarity by event, plug-ins."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from flywheel.errors import ConfigError
from ingest.embed import FeatureEmbedder, SceneRows, add_embedding, load_embedder, scene_embedder
from ingest.scenes import build_scenes

NS = 1_000_000_000
T0 = 1_717_243_200 * NS


class TinyEmbedder:
    """A user's embedder as a class: two numbers per scene, not normalised."""

    version = "tiny-v1-d2"
    dim = 2

    def embed(self, scenes: pa.Table) -> np.ndarray:
        speed = np.nan_to_num(np.asarray(scenes.column("max_speed").to_numpy(), float))
        return np.column_stack([speed, np.full(scenes.num_rows, 10.0)])


class BrokenEmbedder(TinyEmbedder):
    version = "broken-v1-d2"

    def __init__(self, result):
        self.result = result

    def embed(self, scenes):
        return self.result


def log(seed: int, *, brake: bool = False, animal: bool = False, seconds: float = 30.0):
    """A 30 s drive with varied speed and traffic and a firm (not hard) stop in the middle
    window; optionally a hard brake there instead, or a deer."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, seconds, 0.1)
    cruise = rng.uniform(6.0, 20.0)
    speed = cruise + rng.normal(0, 0.3, t.size)
    accel = rng.normal(0, 0.3, t.size)
    hit = (t >= 12.0) & (t < 13.5)
    accel[hit] = rng.uniform(-7.0, -5.0) if brake else rng.uniform(-3.8, -3.0)
    ego = pa.table(
        {
            "t_ns": T0 + (t * NS).astype(np.int64),
            "speed": speed,
            "accel": accel,
            "yaw_rate": rng.normal(0, 0.02, t.size),
        }
    )
    parts = []
    for i in range(int(rng.integers(2, 8))):
        category = str(rng.choice(["car", "car", "truck", "pedestrian"]))
        y = float(rng.choice([-3.5, 3.5, 7.0]))
        x = float(rng.uniform(10, 60))
        parts.append((f"{category}{i}", category, x, y))
    if animal:
        parts.append(("deer", "animal", 25.0, 1.0))
    columns: dict[str, list] = {k: [] for k in ("t_ns", "track_id", "category", "x", "y")}
    for track_id, category, x, y in parts:
        columns["t_ns"] += list(ego.column("t_ns").to_numpy()[100:200])  # the middle window
        columns["track_id"] += [track_id] * 100
        columns["category"] += [category] * 100
        columns["x"] += [x] * 100
        columns["y"] += [y] * 100
    return build_scenes(f"log{seed}", ego, pa.table(columns))


def test_layout_version_and_unit_norm():
    embedder = FeatureEmbedder()
    assert embedder.dim == 35 and embedder.version == "features-v1-d35"
    scenes = log(1, brake=True)
    vectors = embedder.embed(scenes)
    assert vectors.dtype == np.float32 and vectors.shape == (3, embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert embedder.embed(scenes.slice(0, 0)).shape == (0, embedder.dim)


def test_a_scene_embeds_the_same_alone_or_in_any_batch():
    embedder = FeatureEmbedder()
    batch = pa.concat_tables([log(s, brake=s % 2 == 0, animal=s == 3) for s in range(6)])
    together = embedder.embed(batch)
    for i in range(batch.num_rows):
        alone = embedder.embed(batch.slice(i, 1))
        assert np.array_equal(alone[0], together[i]), i
    reordered = embedder.embed(batch.take(np.arange(batch.num_rows)[::-1]))
    assert np.array_equal(reordered[::-1], together)
    assert np.array_equal(embedder.embed(batch), together)  # and from run to run


def test_hard_brake_scenes_are_each_others_nearest_neighbours():
    scenes = pa.concat_tables(
        [log(s, brake=True) for s in range(4)] + [log(s) for s in range(10, 20)]
    )
    vectors = FeatureEmbedder().embed(scenes)
    braking = np.array(["hard_brake" in tags for tags in scenes.column("tags").to_pylist()])
    assert braking.sum() == 4
    similarity = vectors @ vectors.T
    for query in np.flatnonzero(braking):
        order = [i for i in np.argsort(-similarity[query]) if i != query]
        assert braking[order[:3]].all(), query  # the other three hard brakes come first


def test_an_animal_scene_stands_out():
    scenes = pa.concat_tables([log(s) for s in range(10)] + [log(99, animal=True)])
    vectors = FeatureEmbedder().embed(scenes)
    distance = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)
    np.fill_diagonal(distance, np.inf)
    nearest = distance.min(axis=1)
    animal = ["animal" in tags for tags in scenes.column("tags").to_pylist()].index(True)
    assert nearest[animal] == nearest.max()
    assert nearest[animal] > 2 * np.median(nearest)


def test_add_embedding_appends_unit_float32_lists():
    scenes = log(2, brake=True)
    out = add_embedding(scenes, FeatureEmbedder())
    assert out.column_names == [*scenes.column_names, "embedding", "embedding_version"]
    assert out.schema.field("embedding").type == pa.list_(pa.float32())
    vectors = np.array(out.column("embedding").to_pylist())
    assert vectors.shape == (3, 35)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert out.column("embedding_version").to_pylist() == ["features-v1-d35"] * 3
    # embedding again replaces, never duplicates, the columns
    again = add_embedding(out, TinyEmbedder())
    assert again.column_names.count("embedding") == 1
    assert again.column("embedding_version").to_pylist() == ["tiny-v1-d2"] * 3


def test_add_embedding_normalises_a_custom_embedder_and_keeps_zero_rows_zero():
    scenes = log(3)
    speeds = np.asarray(scenes.column("max_speed").to_numpy())
    out = np.array(add_embedding(scenes, TinyEmbedder()).column("embedding").to_pylist())
    expected = np.column_stack([speeds, np.full(3, 10.0)])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected, rtol=1e-6)

    zeros = add_embedding(scenes, BrokenEmbedder(np.zeros((3, 2))))
    assert zeros.column("embedding").to_pylist() == [[0.0, 0.0]] * 3


def test_add_embedding_on_no_scenes():
    out = add_embedding(build_scenes("x", None, None), BrokenEmbedder(None))  # never called
    assert out.num_rows == 0
    assert out.schema.field("embedding").type == pa.list_(pa.float32())
    assert out.schema.field("embedding_version").type == pa.string()


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (np.zeros((3, 3)), r"shape \(3, 3\).*expected \(3, 2\)"),
        (np.zeros(6), r"shape \(6,\)"),
        (np.array([[1.0, 0.0], [np.nan, 1.0], [1.0, 1.0]]), "NaN or infinite.*log4-00001"),
        (np.array([["a", "b"]] * 3), "expected numbers"),
    ],
)
def test_add_embedding_rejects_bad_vectors(result, message):
    with pytest.raises(ConfigError, match=message):
        add_embedding(log(4), BrokenEmbedder(result))


def test_load_embedder_default_and_a_class_in_this_module():
    assert isinstance(load_embedder(None), FeatureEmbedder)
    assert isinstance(load_embedder(""), FeatureEmbedder)
    custom = load_embedder(f"{__name__}:TinyEmbedder")
    assert isinstance(custom, TinyEmbedder) and custom.version == "tiny-v1-d2"


def test_load_embedder_from_a_users_package(tmp_path, monkeypatch):
    package = tmp_path / "mypkg_embedders"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "model.py").write_text(
        textwrap.dedent(
            """
            import numpy as np

            class Constant:
                def __init__(self, dim):
                    self.dim = dim
                    self.version = f"constant-v1-d{dim}"

                def embed(self, scenes):
                    return np.ones((scenes.num_rows, self.dim))

            def make():
                return Constant(4)

            ready = Constant(3)

            def broken():
                raise RuntimeError("weights not found")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_embedder("mypkg_embedders.model:make").version == "constant-v1-d4"
    assert load_embedder("mypkg_embedders.model:ready").dim == 3
    out = add_embedding(log(5), load_embedder("mypkg_embedders.model:make"))
    assert out.column("embedding").to_pylist()[0] == [0.5] * 4
    with pytest.raises(ConfigError, match="weights not found"):
        load_embedder("mypkg_embedders.model:broken")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("FeatureEmbedder", "not of the form 'package.module:attr'"),
        ("ingest.embed:", "not of the form"),
        ("no_such_package_xyz.models:Model", "cannot import 'no_such_package_xyz.models'"),
        ("ingest.embed:NoSuchEmbedder", "has no attribute 'NoSuchEmbedder'"),
        ("ingest.scenes:TAGS", "tuple, which is not an embedder"),
        ("ingest.scenes:build_scenes", "calling it failed"),
        (f"{__name__}:BrokenEmbedder", "calling it failed"),
    ],
)
def test_load_embedder_bad_specs_name_the_spec(spec, message):
    with pytest.raises(ConfigError, match=message) as caught:
        load_embedder(spec)
    assert repr(spec) in str(caught.value)
    assert caught.value.spec == spec


def test_a_scene_embedder_sees_its_scene_and_exactly_the_rows_in_its_window():
    seen = []

    @scene_embedder(version="window-v1-d3", dim=3)
    def window(rows: SceneRows):
        seen.append((rows.scene, rows.ego, rows.objects))
        return [rows.ego.num_rows, 0 if rows.objects is None else rows.objects.num_rows, 1.0]

    scenes = log(2)
    ego = pa.table({"t_ns": T0 + np.arange(0, 30 * NS, NS // 10)[::-1], "speed": np.ones(300)})
    objects = pa.table({"t_ns": T0 + np.array([0, 5 * NS, 12 * NS, 29 * NS]), "x": [1.0] * 4})
    out = add_embedding(scenes, window, {"ego": ego, "objects": objects})
    assert [s["scene_id"] for s, _, _ in seen] == scenes.column("scene_id").to_pylist()
    all_t = ego.column("t_ns").to_numpy()
    for scene, ego_rows, object_rows in seen:
        lo, hi = scene["start_ns"], scene["end_ns"]
        t = ego_rows.column("t_ns").to_numpy()
        assert ((t >= lo) & (t < hi)).all() and len(t) == ((all_t >= lo) & (all_t < hi)).sum()
        expected = (
            (objects.column("t_ns").to_numpy() >= lo) & (objects.column("t_ns").to_numpy() < hi)
        ).sum()
        assert object_rows.num_rows == expected
    assert out.column("embedding_version").to_pylist()[0] == "window-v1-d3"
    # without the log's rows (a table it names is absent): None, not an error
    empty = add_embedding(scenes, scene_embedder("none-v1-d1", 1)(lambda rows: [rows.ego is None]))
    assert np.allclose(np.array(empty.column("embedding").to_pylist()), 1.0)


def test_the_wide_example_embedder_ingests_and_searches_768_numbers(drives, tmp_path, monkeypatch):
    from click.testing import CliRunner

    import mining
    from cli import cli

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "examples"))
    lake = tmp_path / "lake"
    args = ["ingest", str(drives), "--lake", str(lake), "--workers", "1"]
    result = CliRunner().invoke(cli, [*args, "--embedder", "motion_embedder:motion"])
    assert result.exit_code == 0, result.output
    m = mining.open(lake)
    assert (m.catalog().dim, m.catalog().version) == (768, "motion-v1-s7-d768")
    vectors = m.catalog().vectors
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # exact top 5 by numpy equals the API's, for a scene of each log
    ids = m.catalog().ids
    for row in (0, len(ids) // 2, len(ids) - 1):
        found = m.similar(ids[row], k=5)
        sims = vectors @ vectors[row]
        sims[row] = -np.inf
        assert np.allclose(found["score"].to_numpy(), np.sort(sims)[::-1][:5], atol=1e-5)
    # the stored vector is the example's function of the scene's rows as the lake holds them
    import motion_embedder

    scene = m.sql(f"SELECT * FROM scenes WHERE scene_id = '{ids[1]}'").iloc[0]
    window = f"log_id = '{scene.log_id}' AND t_ns >= {scene.start_ns} AND t_ns < {scene.end_ns}"
    rows = {
        t: pa.Table.from_pandas(m.sql(f"SELECT * FROM {t} WHERE {window} ORDER BY t_ns"))
        for t in ("ego", "objects")
    }
    assert rows["ego"].num_rows > 0 and rows["objects"].num_rows > 0
    expected = motion_embedder.motion.function(
        SceneRows(scene.to_dict(), rows["ego"], rows["objects"], None, None)
    )
    assert np.allclose(vectors[1], expected / np.linalg.norm(expected), atol=1e-5)
    # a scene embeds the same whichever scenes surround it: a second ingest changes nothing
    again = tmp_path / "again"
    result = CliRunner().invoke(
        cli, ["ingest", str(drives), "--lake", str(again), "--workers", "1",
              "--embedder", "motion_embedder:motion"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert np.array_equal(mining.open(again).catalog().vectors, vectors)
