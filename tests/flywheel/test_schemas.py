"""One schema per table (flywheel.schemas): every file of a table has exactly its columns.

The lake here is built the way users build theirs: real ingest of generated logs (and a file
that is no log, quarantined), a saved selection, a batch through the simulated vendor, a
trigger run, then the history simulator of the demo. Other tools must then read it with a
plain glob (docs/contract.md §2), without DuckDB's union_by_name.
"""

from __future__ import annotations

import datetime as dt
import time

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel import schemas
from flywheel.errors import LakeError
from flywheel.lake import Lake

# tables the lake below holds files of (imu: the generated logs have no IMU topic)
WRITTEN = set(schemas.SCHEMAS) - {"imu", "rejections"}  # rejections: test_quality_lake


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    import labeling
    import mining
    from flywheel import sources
    from ingest import ingest, triggers
    from labeling import datasets
    from metrics.track import track
    from sim import generate
    from sim.history import simulate_history

    root = tmp_path_factory.mktemp("schemas")
    out = root / "logs"
    generate(out, logs=2, seconds=30.0, seed=1)
    (out / "not_a_log.mcap").write_bytes(b"this is no log at all")
    lake = Lake(root / "lake")
    sources.add(lake, "fleet", "internal", until="2099-12-31")
    summary = ingest([out], lake, source="fleet")
    assert summary.count("ingested") == 2 and summary.count("quarantined") == 1

    miner = mining.open(lake)
    miner.save("schemas", miner.sql("SELECT * FROM scenes ORDER BY scene_id LIMIT 4"))
    vendor = labeling.SimulatedVendor.for_lake(
        lake.root, turnaround_median=dt.timedelta(seconds=0.05), turnaround_sigma=0.1
    )
    labeling.submit(lake, "schemas", vendor, batch_size=2)
    time.sleep(1.0)
    labeling.sync(lake, vendor)
    version = datasets.create(lake, "schemas", selection="schemas")
    batch = lake.read("tasks")["batch_id"][0].as_py()
    track(lake, "trained", "m1", datasets=[version.ref], batches=[batch])

    triggers.define(lake, "moving", when="speed > 1")
    triggers.run(lake)
    simulate_history(lake, weeks=2, scenes_per_week=30, seed=3)
    return lake


def _files(lake: Lake, table: str) -> list:
    return sorted((lake.root / table).rglob("*.parquet"))


@pytest.mark.parametrize("table", list(schemas.SCHEMAS))
def test_every_file_has_exactly_the_declared_schema(lake, table):
    declared = schemas.SCHEMAS[table]
    files = _files(lake, table)
    if table in WRITTEN:
        assert files, f"the test lake has no {table} file: the test no longer covers it"
    for file in files:
        schema = pq.read_schema(file)
        assert schema.names == declared.names, (file, schema.names)
        assert schema.types == declared.types, (file, schema)


def test_the_history_simulator_and_ingest_write_the_same_scenes_and_logs(lake):
    for table in ("scenes", "logs"):
        names = {f.name for f in _files(lake, table)}
        assert any(n.startswith("hist-") for n in names), table  # simulated history
        assert any(not n.startswith("hist-") for n in names), table  # ingested


@pytest.mark.parametrize("table", ["scenes", "logs"])
def test_the_contract_query_reads_the_lake_without_union_by_name(lake, table):
    column = "duration_s" if table == "scenes" else "scene_seconds"
    glob = f"{lake.root}/{table}/**/*.parquet"
    query = f"SELECT count({column}), count(*) FROM read_parquet('{glob}', hive_partitioning=true)"
    [(count, rows)] = duckdb.connect().sql(query).fetchall()
    published = lake.connect().execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    assert rows == published > 0
    assert count == rows  # ingest and the history simulator both set it


def test_every_tag_in_the_lake_is_in_the_vocabulary(lake):
    found = lake.connect().execute("SELECT DISTINCT unnest(tags) FROM scenes").fetchall()
    tags = {t for (t,) in found}
    assert schemas.SIMULATED_HISTORY in tags and tags - {schemas.SIMULATED_HISTORY}
    assert tags <= set(schemas.TAGS), tags - set(schemas.TAGS)


def test_the_labeling_and_ingest_modules_use_the_core_declarations():
    from ingest import scenes
    from labeling import _store
    from labeling.vendors import label_studio, simulated

    assert _store.BATCH_SCHEMA is schemas.SCHEMAS["batches"]
    assert _store.TASK_SCHEMA is schemas.SCHEMAS["tasks"]
    assert _store.LABEL_SCHEMA is schemas.SCHEMAS["labels"]
    assert scenes.TAGS == schemas.DETECTED_TAGS and set(schemas.DETECTED_TAGS) < set(schemas.TAGS)
    assert list(scenes.SCENES_SCHEMA) + [
        schemas.SCHEMAS["scenes"].field(c) for c in scenes.EMBEDDING_COLUMNS
    ] == list(schemas.SCHEMAS["scenes"])
    assert set(simulated.SCENARIOS) <= set(schemas.TAGS)
    assert set(label_studio.SCENARIOS) - {"other"} <= set(schemas.TAGS)


def _gnss(**extra) -> pa.Table:
    columns = {"log_id": ["a"], "t_ns": [1], "lat": [1.0], "lon": [2.0], "alt": [None]}
    return pa.table({**columns, **extra})


def test_an_unknown_column_is_refused():
    with pytest.raises(LakeError, match="column 'colour' is not declared"):
        schemas.conform("gnss", _gnss(colour=["red"]))
    full = schemas.conform("gnss", _gnss())
    schemas.check("gnss", full)
    with pytest.raises(LakeError, match="column 'colour' is not declared"):
        schemas.check("gnss", full.append_column("colour", pa.array(["red"])))


def test_writing_an_unknown_column_publishes_nothing(tmp_path):
    lake = Lake(tmp_path / "lake")
    with pytest.raises(LakeError, match="not declared"):
        lake.write("gnss", _gnss(colour=["red"]), name="a")
    assert not _files(lake, "gnss")


def test_conform_fills_optional_columns_orders_and_casts():
    table = schemas.conform(
        "gnss", pa.table({"lon": [2], "lat": [1.0], "alt": [0.5], "t_ns": [1], "log_id": ["a"]})
    )
    assert table.schema == schemas.SCHEMAS["gnss"]
    assert table.to_pylist() == [
        {"log_id": "a", "t_ns": 1, "stamp_ns": None, "log_time_ns": None, "lat": 1.0,
         "lon": 2.0, "alt": 0.5, "status": None}
    ]  # fmt: skip
    # a required column is never made up
    with pytest.raises(LakeError, match="column 'lat' is missing"):
        schemas.conform("gnss", _gnss().drop_columns(["lat"]))
    # columns old writers did not have are null, not refused
    old = schemas.filled({"log_id": ["a"]}, schemas.SCHEMAS["logs"], 1).drop_columns(
        list(schemas.LATE_COLUMNS["logs"])
    )
    late = list(schemas.LATE_COLUMNS["logs"])
    assert schemas.conform("logs", old).select(late).to_pylist() == [dict.fromkeys(late)]


def test_a_tag_outside_the_vocabulary_is_refused():
    scenes = schemas.filled(
        {"scene_id": ["s"], "tags": [["hard_brake", "made_up"]]}, schemas.SCHEMAS["scenes"], 1
    )
    with pytest.raises(LakeError, match="tag 'made_up' is not in the tag vocabulary"):
        schemas.conform("scenes", scenes)
    ok = schemas.filled(
        {"scene_id": ["s"], "tags": [["hard_brake", schemas.SIMULATED_HISTORY]]},
        schemas.SCHEMAS["scenes"],
        1,
    )
    assert schemas.conform("scenes", ok).column("tags").to_pylist() == [
        ["hard_brake", schemas.SIMULATED_HISTORY]
    ]


def test_every_required_column_is_declared():
    assert set(schemas.REQUIRED) == set(schemas.SCHEMAS)
    for table, required in schemas.REQUIRED.items():
        assert set(required) <= set(schemas.SCHEMAS[table].names), table
        assert not set(required) & set(schemas.LATE_COLUMNS.get(table, ())), table
