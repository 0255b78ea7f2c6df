"""Lineage against a lake built by hand: sources, logs, batches, overlapping dataset versions and
models trained on several of them, asked both ways; the expected answers are worked out here
from how the lake was built, not from the code under test."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest

from flywheel import schemas, sources
from flywheel.errors import InputError, UsageError
from flywheel.lake import Lake
from flywheel.lineage import lineage
from labeling import datasets
from metrics.track import track

T0 = dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC)
TODAY = dt.datetime.now(dt.UTC).date()
# source -> its logs; each log has three scenes
LOGS = {"fleet": ["fa", "fb"], "partner": ["pa"], "old": ["oa"], "unassigned": ["ua"]}
SOURCE_OF = {log: source for source, logs in LOGS.items() for log in logs}
SCENES = {log: [f"{log}-{i:05d}" for i in range(3)] for log in SOURCE_OF}
# batch -> scenes, each labeled once by its own vendor
BATCHES = {
    "b1": SCENES["fa"] + SCENES["pa"][:1],
    "b2": SCENES["fb"],
    "b3": SCENES["oa"] + SCENES["ua"],
}
VENDOR = {"b1": "label-studio", "b2": "simulated", "b3": "simulated"}


def label(kind: str) -> str:
    return json.dumps([{"type": "choices", "value": {"choices": [kind]}}])


def build(root) -> Lake:
    lake = Lake(root)
    sources.add(lake, "fleet", "internal")
    sources.add(lake, "partner", "partner EULA", until=TODAY + dt.timedelta(days=10))
    sources.add(lake, "old", "trial", until=TODAY - dt.timedelta(days=3))
    for i, (log, source) in enumerate(sorted(SOURCE_OF.items())):
        n = len(SCENES[log])
        logs = {
            "log_id": [log],
            "source_uri": [f"file:///drives/{log}.mcap"],
            "bytes": [100],
            "message_count": [10],
            "start_ns": [i * 10**12],
            "end_ns": [i * 10**12 + 30 * 10**9],
            "ingested_at": pa.array([T0], schemas.UTC_TS),
            "source": [None if source == "unassigned" else source],
        }
        scenes = {
            "scene_id": SCENES[log],
            "log_id": [log] * n,
            "start_ns": [i * 10**12 + k * 10**10 for k in range(n)],
            "end_ns": [i * 10**12 + (k + 1) * 10**10 for k in range(n)],
            "max_speed": [10.0 + k for k in range(n)],
            "min_accel": [-1.0] * n,
            "min_object_distance": [None] * n,
            "n_tracks": [0] * n,
            "n_pedestrians": [k for k in range(n)],
            "n_vehicles": [0] * n,
            "tags": pa.array([[]] * n, pa.list_(pa.string())),
            "embedding": pa.array([[1.0, float(k)] for k in range(n)], pa.list_(pa.float32())),
            "embedding_version": ["test"] * n,
        }
        lake.write("scenes", schemas.filled(scenes, schemas.SCHEMAS["scenes"], n), name=log)
        lake.write("logs", schemas.filled(logs, schemas.SCHEMAS["logs"], 1), name=log)
    for batch, scenes in BATCHES.items():
        n = len(scenes)
        done = pa.array([T0 + dt.timedelta(hours=1)] * n, schemas.UTC_TS)
        common = {"batch_id": [batch] * n, "scene_id": scenes, "vendor": [VENDOR[batch]] * n}
        lake.write(
            "tasks",
            schemas.filled(
                {
                    **common,
                    "external_id": [f"{batch}-{k}" for k in range(n)],
                    "status": ["labeled"] * n,
                    "submitted_at": pa.array([T0] * n, schemas.UTC_TS),
                    "completed_at": done,
                },
                schemas.SCHEMAS["tasks"],
                n,
            ),
            name=batch,
        )
        lake.write(
            "labels",
            schemas.filled(
                {
                    **common,
                    "annotator": ["ann"] * n,
                    "result": [label("car")] * n,
                    "completed_at": done,
                },
                schemas.SCHEMAS["labels"],
                n,
            ),
            name=batch,
        )
        from flywheel import events

        events.record(lake, scenes, "submitted", at=T0, attrs={"batch_id": batch}, name=batch)
    every = [s for log in sorted(SCENES) for s in SCENES[log]]
    lake.write(
        "selections",
        schemas.filled(
            {
                "selection": ["fleet-peds"] * 6,
                "scene_id": SCENES["fa"] + SCENES["fb"],
                "score": [1.0] * 6,
                "rank": list(range(6)),
                "query": ["hand"] * 6,
                "created_at": pa.array([T0] * 6, schemas.UTC_TS),
            },
            schemas.SCHEMAS["selections"],
            6,
        ),
        name="fleet-peds",
    )
    assert len(every) == 15
    return lake


def relabel(lake: Lake, scene_id: str, kind: str, at: dt.datetime) -> None:
    """A later label of `scene_id`, in a batch of its own."""
    row = {
        "batch_id": [f"re-{scene_id}"],
        "scene_id": [scene_id],
        "vendor": ["simulated"],
        "annotator": ["ann2"],
        "result": [label(kind)],
        "completed_at": pa.array([at], schemas.UTC_TS),
    }
    lake.write("labels", schemas.filled(row, schemas.SCHEMAS["labels"], 1), name=f"re-{scene_id}")


@pytest.fixture
def lake(tmp_path) -> Lake:
    return build(tmp_path / "lake")


def test_both_directions_over_overlapping_versions(lake):
    d1 = datasets.create(lake, "cars", batches=["b1"])
    d_all = datasets.create(lake, "all", batches=["b1", "b2"])
    peds = datasets.create(lake, "peds", selection="fleet-peds", where="n_pedestrians > 0")
    relabel(lake, "fa-00000", "truck", T0 + dt.timedelta(days=1))
    d2 = datasets.create(lake, "cars", batches=["b1"])
    assert (d1.ref, d2.ref, d_all.ref, peds.ref) == ("cars@1", "cars@2", "all@1", "peds@1")
    assert peds.scenes == 4  # scenes 1 and 2 of fa and fb have pedestrians
    track(lake, "trained", "m-cars", datasets=["cars@1", "cars@2"], code="abc", params={"lr": 1})
    track(lake, "trained", "m-all", datasets=["all@1"])
    track(lake, "trained", "m-old", batches=["b3"])
    track(lake, "deployed", "m-all")
    lin = lineage(lake)

    model = lin.describe_model("m-cars")
    assert model["datasets"] == ["cars@1", "cars@2"]
    assert model["logs"] == ["fa", "pa"]
    assert model["scenes"] == 4
    assert model["batches"] == sorted({"b1", "re-fa-00000"})
    assert {s["name"]: s["until"] for s in model["sources"]} == {
        "fleet": None,
        "partner": (TODAY + dt.timedelta(days=10)).isoformat(),
    }
    assert model["vendors"] == ["label-studio", "simulated"]
    assert (model["code"], json.loads(model["params"])) == ("abc", {"lr": 1})
    assert model["deployed"] is False

    old = lin.describe_model("m-old")
    assert old["datasets"] == [] and old["batches"] == ["b3"]
    assert old["logs"] == ["oa", "ua"]
    assert {s["name"] for s in old["sources"]} == {"old", "unassigned"}

    partner = lin.describe_source("partner")
    assert partner["logs"] == 1
    assert partner["datasets"] == ["all@1", "cars@1", "cars@2"]
    assert partner["models"] == [
        {"model": "m-all", "deployed": True},
        {"model": "m-cars", "deployed": False},
    ]
    fleet = lin.describe_source("fleet")
    assert fleet["datasets"] == ["all@1", "cars@1", "cars@2", "peds@1"]
    assert [m["model"] for m in fleet["models"]] == ["m-all", "m-cars"]

    assert lin.describe_log("fb")["models"] == [{"model": "m-all", "deployed": True}]
    assert lin.describe_log("fb")["datasets"] == ["all@1", "peds@1"]
    assert lin.describe_dataset("cars@2")["models"] == [{"model": "m-cars", "deployed": False}]
    assert lin.describe_dataset("peds@1")["logs"] == ["fa", "fb"]

    expiring = {e["source"]: e for e in lin.describe_expiring(30)}
    assert set(expiring) == {"partner", "old"}  # fleet has no end, ended ones are included
    assert expiring["partner"]["models"] == ["m-all", "m-cars"]
    assert expiring["partner"]["deployed"] == ["m-all"]
    assert expiring["old"]["models"] == ["m-old"] and expiring["old"]["status"] == "ended"
    assert set(e["source"] for e in lin.describe_expiring(5)) == {"old"}

    models = lin.models().set_index("model")
    assert models.loc["m-cars", "trained_by"] == sources.user()
    assert bool(models.loc["m-all", "deployed"]) is True


def test_a_relabel_makes_a_new_version_and_leaves_the_old_one_as_it_was(lake):
    first = datasets.create(lake, "cars", batches=["b1"])
    before = Lake(lake.root).read("datasets").to_pylist()
    again = datasets.create(lake, "cars", selection=None, batches=["b1"])
    assert (again.version, again.created, again.digest) == (1, False, first.digest)
    relabel(lake, "fa-00001", "bus", T0 + dt.timedelta(days=2))
    second = datasets.create(lake, "cars", batches=["b1"])
    assert second.version == 2 and second.digest != first.digest
    rows = Lake(lake.root).read("datasets").to_pylist()
    assert [r for r in rows if r["version"] == 1] == before  # the old version, value for value
    changed = datasets.diff(lake, "cars@1", "cars@2")
    assert changed[["scene_id", "change"]].values.tolist() == [["fa-00001", "relabeled"]]
    assert "bus" in changed["label_new"][0] and "car" in changed["label_old"][0]
    # equal (scene, label) pairs make the same version however they are asked for
    relabel(lake, "fa-00001", "car", T0 + dt.timedelta(days=3))
    third = datasets.create(lake, "cars", batches=["b1"])
    assert (third.version, third.created) == (1, False)


def test_ended_revoked_and_eval_only_sources_are_refused(lake):
    with pytest.raises(InputError, match=r"old \(license ended on") as refused:
        datasets.create(lake, "mixed", batches=["b3"])
    assert "--allow-expired" in str(refused.value)
    assert Lake(lake.root).read("datasets").num_rows == 0
    allowed = datasets.create(lake, "mixed", batches=["b3"], allow_expired=True, by="ana")
    shown = datasets.show(lake, allowed.ref)
    assert shown["override"]["allow_expired"] == ["old"] and shown["override"]["by"] == "ana"
    sources.add(lake, "eval-only", "benchmark", uses="eval")
    sources.assign(lake, "eval-only", ["fb"])
    with pytest.raises(InputError, match=r"eval-only \(`train` not allowed"):
        datasets.create(lake, "b2set", batches=["b2"])
    sources.revoke(lake, "partner")
    with pytest.raises(InputError, match=r"partner \(revoked on"):
        datasets.create(lake, "b1set", batches=["b1"], allow_expired=True)


def test_ingest_refuses_unknown_and_revoked_sources(lake, tmp_path):
    from ingest import ingest

    with pytest.raises(UsageError, match="known sources: fleet, old, partner"):
        ingest([tmp_path], lake, source="nobody")
    sources.revoke(lake, "partner")
    with pytest.raises(InputError, match="revoked"):
        ingest([tmp_path], lake, source="partner")
    summary = ingest([tmp_path], lake, source="old")
    assert "ended on" in summary.warnings[0]


def test_assign_moves_logs_and_the_answers_follow(lake):
    assert sources.assign(lake, "partner", ["fa", "pa"]) == ["fa"]
    counts = dict(
        Lake(lake.root).connect().execute("SELECT source, count(*) FROM logs GROUP BY 1").fetchall()
    )
    assert counts == {"fleet": 1, "partner": 2, "old": 1, "unassigned": 1}
    with pytest.raises(InputError, match="no log 'zz'"):
        sources.assign(lake, "fleet", ["zz"])
    with pytest.raises(InputError, match="unknown source"):
        sources.assign(lake, "nobody", ["fa"])


def test_sources_are_not_edited_and_names_are_checked(lake):
    assert sources.add(lake, "fleet", "internal")["name"] == "fleet"  # the same terms: no-op
    with pytest.raises(InputError, match="other terms"):
        sources.add(lake, "fleet", "changed")
    for bad in ("../x", "a b", "unassigned", "[red]x"):
        with pytest.raises(InputError):
            sources.add(lake, bad, "x")
    with pytest.raises(InputError, match="not a date"):
        sources.add(lake, "later", "x", until="next year")


def test_missing_things_are_named(lake):
    lin = lineage(lake)
    with pytest.raises(InputError, match="no model 'ghost'"):
        lin.describe_model("ghost")
    with pytest.raises(InputError, match="no dataset version 'cars@9'"):
        lin.describe_dataset("cars@9")
    with pytest.raises(InputError, match="NAME@N"):
        datasets.show(lake, "cars")
    with pytest.raises(InputError, match="unknown dataset version"):
        track(lake, "trained", "m", datasets=["cars@1"])
    with pytest.raises(InputError, match="unknown label batch"):
        datasets.create(lake, "x", batches=["nope"])


def test_training_records_older_than_model_inputs_read_their_batches_as_they_are(lake):
    from flywheel import events

    # what `track trained --batch` wrote before it fixed the batch's scenes
    events.record(lake, ["legacy"], "trained", attrs={"batches": ["b2"]}, name="legacy")
    lin = lineage(lake)
    assert lin.describe_model("legacy")["logs"] == ["fb"]
    assert [m["model"] for m in lin.describe_source("fleet")["models"]] == ["legacy"]
    track(lake, "trained", "fixed", batches=["b1"])  # the same object sees the new record
    assert lin.describe_model("fixed")["logs"] == ["fa", "pa"]
    assert lin.describe_log("fb")["models"] == [{"model": "legacy", "deployed": False}]


def test_unassigned_and_unknown_names(lake):
    lin = lineage(lake)
    assert lin.describe_source("unassigned")["logs"] == 1
    with pytest.raises(InputError, match="unknown source 'nobody'"):
        lin.describe_source("nobody")
    with pytest.raises(InputError, match="no log 'zz'"):
        lin.describe_log("zz")
    assert lin.describe_log("ua")["source"] == "unassigned"
