"""The lake's tables: one Arrow schema per table, declared once (docs/contract.md §2).

Every table of the lake, the stages' own included (labeling's `batches`, `tasks`, `labels`),
has its full schema here, and every writer and reader uses it: `Lake.write` passes each
table through `conform`, so every Parquet file of a table has exactly the declared columns,
in the declared order, with the declared types. Other tools can then read a table without
Flywheel, e.g. ``read_parquet('lake/scenes/**/*.parquet', hive_partitioning = true)``.

`REQUIRED` names the columns a writer must give; the others are optional: `conform` fills
the ones a writer leaves out with nulls (unknown). A column that is not declared is refused:
a new column is declared here first. `TAGS` is every value that may appear in `scenes.tags`.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from flywheel.errors import LakeError

UTC_TS = pa.timestamp("us", tz="UTC")
_S = pa.string()
# the object groups of the signal frame's per-category columns (ingest.signals.GROUP_NAMES)
SIGNAL_GROUPS = ("pedestrian", "cyclist", "vehicle", "animal", "other")
_F = pa.float64()
_I = pa.int64()
_TEXTS = pa.list_(pa.string())

# --- the tag vocabulary -------------------------------------------------------------------------
# The tags ingest derives from a scene's features (ingest.scenes), in the order of the default
# embedder's one-hot block (ingest.embed): appending one changes every embedding.
DETECTED_TAGS = (
    "hard_brake",
    "near_miss",
    "pedestrian_in_path",
    "cyclist_in_path",
    "cut_in",
    "animal",
    "unknown_object",
    "stopped",
    "high_speed",
    "sharp_turn",
    "night",
)
# the tag of the scenes sim.history simulates (the demo's past weeks), never detected
SIMULATED_HISTORY = "simulated_history"
# Every value that may appear in `scenes.tags`: `conform` refuses any other.
TAGS = (*DETECTED_TAGS, SIMULATED_HISTORY)

# --- the tables ---------------------------------------------------------------------------------
SCHEMAS: dict[str, pa.Schema] = {
    "logs": pa.schema(
        [
            ("log_id", _S),
            ("source_uri", _S),
            ("bytes", _I),
            ("message_count", _I),
            # what the file's own index, statistics or metadata list (null when nothing says),
            # and whether every one of them landed (docs/contract.md §11)
            ("expected_messages", _I),
            ("complete", pa.bool_()),
            ("start_ns", _I),
            ("end_ns", _I),
            ("ingested_at", UTC_TS),
            ("sha256", _S),  # of the file's content; log_id is its prefix
            ("format", _S),  # mcap | rosbag2 | ros1 …
            ("status", _S),  # ok | salvaged | no_recognised_topics
            ("topics", _S),  # JSON: [{topic, msgtype, encoding, count, kind, table}]
            ("n_scenes", _I),
            ("scene_seconds", _F),
            ("embedding_version", _S),
            ("notes", _TEXTS),  # warnings of the decode, for people
            ("source", _S),  # the `sources` row it came under; `unassigned` when none (views)
        ]
    ),
    "ego": pa.schema(
        [
            ("log_id", _S),
            ("t_ns", _I),  # the time base (header stamp or log time, see docs/ingest.md)
            ("stamp_ns", _I),  # the message header's stamp (0 without)
            ("log_time_ns", _I),  # when the recorder logged it
            ("x", _F),
            ("y", _F),
            ("z", _F),
            ("yaw", _F),
            ("speed", _F),
            ("accel", _F),
            ("yaw_rate", _F),
            ("frame_id", _S),
        ]
    ),
    # the signal frame the triggers read (ingest.signals): one row per ego sample with the
    # objects around it then, built at ingest; rows of another `frame_version` are rebuilt
    "signals": pa.schema(
        [
            ("log_id", _S),
            ("t_ns", _I),
            ("frame_version", _S),
            ("t_s", _F),
            *((c, _F) for c in ("speed", "accel", "yaw_rate", "lateral_accel", "jerk")),
            *((c, _F) for c in ("x", "y", "yaw")),
            ("n_objects", _I),
            ("nearest_m", _F),
            ("nearest_in_path_m", _F),
            *((f"nearest_{g}_m", _F) for g in SIGNAL_GROUPS),
            *((f"nearest_in_path_{g}_m", _F) for g in SIGNAL_GROUPS),
            *((f"n_{g}s", _I) for g in SIGNAL_GROUPS),
            ("in_path_age_s", _F),
            ("ttc_s", _F),
        ]
    ),
    "gnss": pa.schema(
        [
            ("log_id", _S),
            ("t_ns", _I),
            ("stamp_ns", _I),
            ("log_time_ns", _I),
            ("lat", _F),
            ("lon", _F),
            ("alt", _F),
            ("status", _I),  # NavSatStatus: -1 no fix
        ]
    ),
    "imu": pa.schema(
        [
            ("log_id", _S),
            ("t_ns", _I),
            ("stamp_ns", _I),
            ("log_time_ns", _I),
            ("ax", _F),
            ("ay", _F),
            ("az", _F),
            ("wx", _F),
            ("wy", _F),
            ("wz", _F),
        ]
    ),
    "objects": pa.schema(
        [
            ("log_id", _S),
            ("t_ns", _I),
            ("stamp_ns", _I),
            ("log_time_ns", _I),
            ("track_id", _S),
            ("category", _S),
            ("x", _F),  # ego frame: x forward, y left
            ("y", _F),
            ("z", _F),
            ("distance", _F),
            ("length", _F),
            ("width", _F),
            ("height", _F),
            ("score", _F),
            ("frame_id", _S),  # the frame the detection was logged in
        ]
    ),
    # One row per fixed time window of a log (ingest.scenes builds every column but the last
    # two, which the embedder adds). Nullable floats are null when there is nothing to measure.
    "scenes": pa.schema(
        [
            ("scene_id", _S),
            ("log_id", _S),
            ("start_ns", _I),  # window [start_ns, end_ns)
            ("end_ns", _I),
            ("duration_s", _F),
            ("n_ego_samples", _I),
            ("max_speed", _F),  # m/s
            ("mean_speed", _F),
            ("distance_m", _F),  # integral of speed over the window
            ("min_accel", _F),  # m/s², most negative longitudinal acceleration
            ("max_decel", _F),  # max(0, -min_accel)
            ("max_jerk", _F),  # m/s³, |d accel / dt|
            ("max_abs_yaw_rate", _F),  # rad/s
            ("max_lateral_accel", _F),  # m/s², |speed * yaw_rate|
            ("n_objects", _I),  # detections
            ("n_tracks", _I),  # distinct track ids
            ("n_vehicles", _I),
            ("n_cars", _I),
            ("n_trucks", _I),
            ("n_buses", _I),
            ("n_motorcycles", _I),
            ("n_pedestrians", _I),
            ("n_cyclists", _I),
            ("n_animals", _I),
            ("n_other", _I),  # tracks of a category outside ingest.scenes.KNOWN_CATEGORIES
            ("min_object_distance", _F),  # m; null without objects
            ("n_in_path", _I),  # distinct tracks ever in the ego path corridor
            ("min_in_path_distance", _F),  # m ahead (x); null when nothing was in the path
            ("min_ttc_s", _F),  # s; null when nothing in the path closed in
            ("max_track_lateral_speed", _F),  # m/s of tracks within NEARBY_M; null when none
            ("categories", _TEXTS),  # sorted distinct categories
            ("tags", _TEXTS),  # values of TAGS, in TAGS order
            ("start_hour_local", _F),  # solar hour at the window start (UTC when no GNSS)
            ("is_night", pa.bool_()),  # null without any GNSS fix in the log (no place, no night)
            ("lat", _F),  # window mean of valid GNSS fixes; null without
            ("lon", _F),
            ("keyframe_t_ns", _I),  # first camera frame in the window; null without
            ("embedding", pa.list_(pa.float32())),
            ("embedding_version", _S),
        ]
    ),
    "quarantine": pa.schema(
        [
            ("source_uri", _S),
            ("reason", _S),
            ("at", UTC_TS),
            ("sha256", _S),
            ("bytes", _I),
        ]
    ),
    "selections": pa.schema(
        [
            ("selection", _S),
            ("scene_id", _S),
            ("score", _F),
            ("rank", _I),
            ("query", _S),
            ("created_at", UTC_TS),
        ]
    ),
    # labeling's outbox (labeling/_store.py): one row per scene of a batch, one file per batch,
    # rewritten as its `state` moves planned | pending_approval -> submitting -> submitted
    # (or pending_approval -> rejected)
    "batches": pa.schema(
        [
            ("batch_id", _S),
            ("vendor", _S),
            ("selection", _S),
            ("state", _S),
            ("priority", _I),
            ("position", _I),
            ("scene_id", _S),
            ("score", _F),
            ("rank", _I),
            ("task_key", _S),
            ("data", _S),  # JSON: what the vendor receives
            ("price_per_task", _F),
            ("cost", _F),  # the whole batch's
            ("sla_s", _F),  # the vendor's SLA when the batch was planned
            ("external_id", _S),
            ("created_at", UTC_TS),
            ("approved_at", UTC_TS),
            ("submitted_at", UTC_TS),  # when the batch was committed as submitted (local clock)
            ("updated_at", UTC_TS),
        ]
    ),
    "tasks": pa.schema(
        [
            ("batch_id", _S),
            ("scene_id", _S),
            ("vendor", _S),
            ("external_id", _S),
            ("status", _S),
            ("submitted_at", UTC_TS),
            ("completed_at", UTC_TS),
            ("task_key", _S),
            ("selection", _S),
            ("synced_at", UTC_TS),  # null until a sync saw the task at the vendor (vendor times)
        ]
    ),
    "labels": pa.schema(
        [
            ("batch_id", _S),
            ("scene_id", _S),
            ("vendor", _S),
            ("annotator", _S),
            ("result", _S),
            ("completed_at", UTC_TS),
            ("external_id", _S),
            ("task_key", _S),
            # the result normalised (labeling.normalize): the scenario classes chosen, and the
            # object classes where the task has them; null when written before they existed
            ("classes", _TEXTS),
            ("objects", _TEXTS),
        ]
    ),
    # labels a person rejected (labeling.quality.reject): of a batch, one annotator's or all;
    # they stay in `labels` but no new dataset version takes them
    "rejections": pa.schema(
        [
            ("batch_id", _S),
            ("annotator", _S),  # null: every label of the batch
            ("reason", _S),
            ("at", UTC_TS),
            ("by", _S),
        ]
    ),
    "events": pa.schema(
        [
            ("entity_id", _S),
            ("stage", _S),
            ("at", UTC_TS),
            ("attrs", _S),
        ]
    ),
    # where logs come from and on what terms (flywheel.sources): one file per source, rewritten
    # when it is revoked; `until` is the last day of the license (UTC), null when open-ended
    "sources": pa.schema(
        [
            ("name", _S),
            ("license", _S),
            ("until", pa.date32()),
            ("uses", _TEXTS),  # what the data may be used for: train, eval, …
            ("owner", _S),
            ("added_at", UTC_TS),
            ("revoked_at", UTC_TS),
            ("revoked_by", _S),
            ("purged_at", UTC_TS),  # when `source revoke --purge` deleted its logs' rows
        ]
    ),
    # immutable dataset versions (labeling.datasets): one row per version and scene, one file
    # per version, never rewritten; `digest` hashes the version's (scene_id, label) pairs
    "datasets": pa.schema(
        [
            ("dataset", _S),
            ("version", _I),
            ("digest", _S),
            ("scene_id", _S),
            ("log_id", _S),
            ("source", _S),
            ("label", _S),  # the label's result, JSON text (the vendor's own form)
            ("batch_id", _S),  # the batch the label came from
            ("vendor", _S),
            ("annotator", _S),
            ("created_at", UTC_TS),
            ("created_by", _S),
            ("asked", _S),  # JSON: what it was created from (batches, selection, where)
            ("override", _S),  # JSON: the ended sources --allow-expired let in, and who; or null
        ]
    ),
    # what `track trained --batch` used, fixed when it was recorded (metrics.track): the scenes
    # of the batches, their logs and sources, so lineage outlives a purge of the sources
    "model_inputs": pa.schema(
        [
            ("model", _S),
            ("batch_id", _S),
            ("scene_id", _S),
            ("log_id", _S),
            ("source", _S),
            ("vendor", _S),
            ("recorded_at", UTC_TS),
        ]
    ),
    # triggers (ingest.triggers): one row per version of a definition
    "triggers": pa.schema(
        [
            ("name", _S),
            ("version", _I),
            ("when", _S),
            ("for_s", _F),
            ("gap_s", _F),
            ("then", _S),
            ("within_s", _F),
            ("digest", _S),
            ("added_at", UTC_TS),
            # the [triggers.columns] it uses, {name: expression} as JSON: a change is a version
            ("columns", _S),
        ]
    ),
    # one row per (trigger version, log) evaluated: it publishes that run's hits
    "trigger_runs": pa.schema(
        [
            ("run_id", _S),
            ("trigger", _S),
            ("version", _I),
            ("log_id", _S),
            ("hits", _I),
            ("at", UTC_TS),
        ]
    ),
    "trigger_hits": pa.schema(
        [
            ("trigger", _S),
            ("version", _I),
            ("run_id", _S),
            ("log_id", _S),
            ("start_ns", _I),
            ("end_ns", _I),
            ("max_speed", _F),
            ("min_accel", _F),
            ("min_nearest_m", _F),
            ("min_nearest_in_path_m", _F),
            ("min_ttc_s", _F),
            ("scene_ids", _TEXTS),
        ]
    ),
}

# Columns declared after writers of the table existed: files those wrote lack them, and a
# writer that does not set them gets nulls from `conform` (unknown).
LATE_COLUMNS = {
    "logs": ("expected_messages", "complete", "source"),
    "labels": ("classes", "objects"),
    "triggers": ("columns",),
}

# What a view shows for a null in a column (old files lack the column): a log ingested without
# a source, or before sources existed, came from `unassigned`.
UNASSIGNED = "unassigned"
READ_DEFAULTS = {"logs": {"source": UNASSIGNED}}

# The columns a writer must give (docs/contract.md §2); every other declared column is optional and
# `conform` fills it with nulls when a writer leaves it out.
REQUIRED: dict[str, tuple[str, ...]] = {
    "logs": ("log_id", "source_uri", "bytes", "message_count", "start_ns", "end_ns", "ingested_at"),
    "ego": ("log_id", "t_ns", "x", "y", "yaw", "speed", "accel", "yaw_rate"),
    "gnss": ("log_id", "t_ns", "lat", "lon", "alt"),
    "imu": ("log_id", "t_ns", "ax", "ay", "az", "wx", "wy", "wz"),
    "objects": (
        *("log_id", "t_ns", "track_id", "category", "x", "y", "distance", "length", "width"),
        "score",
    ),
    "signals": ("log_id", "t_ns", "frame_version"),
    "scenes": (
        *("scene_id", "log_id", "start_ns", "end_ns", "max_speed", "min_accel"),
        *("min_object_distance", "n_tracks", "n_pedestrians", "n_vehicles", "tags"),
        *("embedding", "embedding_version"),
    ),
    "quarantine": ("source_uri", "reason", "at", "sha256", "bytes"),
    "selections": ("selection", "scene_id", "score", "rank", "query", "created_at"),
    "batches": ("batch_id", "vendor", "state", "position", "scene_id"),
    "tasks": (
        *("batch_id", "scene_id", "vendor", "external_id", "status", "submitted_at"),
        "completed_at",
    ),
    "labels": ("batch_id", "scene_id", "vendor", "annotator", "result", "completed_at"),
    "events": ("entity_id", "stage", "at", "attrs"),
    "sources": ("name", "license", "uses", "added_at"),
    "datasets": (
        *("dataset", "version", "digest", "scene_id", "log_id", "source", "label"),
        *("created_at", "created_by"),
    ),
    "model_inputs": ("model", "batch_id", "scene_id", "recorded_at"),
    "rejections": ("batch_id", "at", "by"),
    "triggers": tuple(n for n in SCHEMAS["triggers"].names if n != "columns"),
    "trigger_runs": tuple(SCHEMAS["trigger_runs"].names),
    "trigger_hits": tuple(SCHEMAS["trigger_hits"].names),
}

# Tables whose rows belong to one ingested log: they are visible only once the log's row in
# `logs` is published, so a crash between writing them and publishing the log hides them.
PER_LOG_TABLES = ("ego", "gnss", "imu", "objects", "scenes", "signals")

# Tables whose rows a later write publishes: (key column, the table whose rows publish it). A
# trigger run writes its hits, then its `trigger_runs` rows; a crash between leaves hits that
# no view shows, and the rerun writes them again under a new run id.
PUBLISHED_BY = {"trigger_hits": ("run_id", "trigger_runs")}

# Views the lake derives from its tables (name -> SELECT), made after the tables' views.
# `models`: one row per model `flywheel track` recorded, with what a person asks of it later.
VIEWS = {
    "models": """
        SELECT entity_id AS model,
            max("at") FILTER (stage = 'trained') AS trained_at,
            max("at") FILTER (stage = 'evaluated') AS evaluated_at,
            max("at") FILTER (stage = 'deployed') AS deployed_at,
            count(*) FILTER (stage = 'deployed') > 0 AS deployed,
            CAST(coalesce(json_extract_string(arg_max(attrs, "at") FILTER (stage = 'trained'),
                '$.datasets[*]'), []) AS VARCHAR[]) AS datasets,
            CAST(coalesce(json_extract_string(arg_max(attrs, "at") FILTER (stage = 'trained'),
                '$.batches[*]'), []) AS VARCHAR[]) AS batches,
            json_extract_string(arg_max(attrs, "at") FILTER (stage = 'trained'), '$.by')
                AS trained_by,
            json_extract_string(arg_max(attrs, "at") FILTER (stage = 'trained'), '$.code')
                AS code,
            json_extract(arg_max(attrs, "at") FILTER (stage = 'trained'), '$.params')::VARCHAR
                AS params,
            arg_max(attrs, "at") FILTER (stage = 'trained') AS attrs
        FROM events
        WHERE stage IN ('trained', 'evaluated', 'deployed')
        GROUP BY entity_id
        HAVING count(*) FILTER (stage = 'trained') > 0
    """,
}

# The tables each view reads: a connection over fewer tables has no such view.
VIEW_READS = {"models": ("events",)}

# Every name the lake reads as a table: a folder of any other name is not a table and never
# becomes a view (or SQL).
TABLES = tuple(SCHEMAS)
KNOWN_TABLES = TABLES
# Every name a query may read: the tables and the views derived from them.
QUERYABLE = (*TABLES, *VIEWS)


def check(name: str, table: pa.Table) -> None:
    """Raise LakeError unless `table` has exactly the declared columns of table `name`, with
    the declared types (a column of nulls fits any type), naming the first column that is
    missing, of the wrong type, or not declared. Values of `scenes.tags` must be `TAGS`.

    >>> check("gnss", pa.table({"log_id": ["a"]}))
    Traceback (most recent call last):
    ...
    flywheel.errors.LakeError: table gnss: column 't_ns' is missing (expected int64)
    """
    schema = _schema(name)
    for column in schema:
        if column.name not in table.column_names:
            raise LakeError(
                f"table {name}: column {column.name!r} is missing (expected {column.type})"
            )
        actual = table.schema.field(column.name).type
        if not _same_type(actual, column.type):
            raise LakeError(
                f"table {name}: column {column.name!r} is {actual}, expected {column.type}"
            )
    _refuse_unknown(name, table)
    if name == "scenes":
        _check_tags(table.column("tags"))


def _schema(name: str) -> pa.Schema:
    try:
        return SCHEMAS[name]
    except KeyError:
        raise LakeError(
            f"{name!r} is not a table of the lake; tables: {', '.join(TABLES)}"
        ) from None


def _refuse_unknown(name: str, table: pa.Table) -> None:
    declared = set(SCHEMAS[name].names)
    unknown = [c for c in table.column_names if c not in declared]
    if unknown:
        raise LakeError(
            f"table {name}: column {unknown[0]!r} is not declared; the columns of {name} are "
            f"{', '.join(SCHEMAS[name].names)} (declare a new column in flywheel/schemas.py)"
        )
    if len(set(table.column_names)) != len(table.column_names):
        twice = next(c for c in table.column_names if table.column_names.count(c) > 1)
        raise LakeError(f"table {name}: column {twice!r} appears twice")


def _check_tags(tags: pa.ChunkedArray) -> None:
    if pa.types.is_null(tags.type) or not len(tags):
        return
    values = pc.unique(pc.list_flatten(tags)).drop_null().to_pylist()
    unknown = sorted(set(values) - set(TAGS))
    if unknown:
        raise LakeError(
            f"table scenes: tag {unknown[0]!r} is not in the tag vocabulary "
            f"(flywheel.schemas.TAGS: {', '.join(TAGS)})"
        )


UTC_NAMES = {"UTC", "Etc/UTC", "+00:00", "Z"}  # DuckDB reads UTC back as Etc/UTC


def _same_type(actual: pa.DataType, expected: pa.DataType) -> bool:
    if actual == expected or pa.types.is_null(actual):
        return True
    return (
        pa.types.is_timestamp(actual)
        and pa.types.is_timestamp(expected)
        and actual.unit == expected.unit
        and actual.tz in UTC_NAMES
        and expected.tz in UTC_NAMES
    )


def conform(name: str, table: pa.Table) -> pa.Table:
    """`table` with exactly the declared columns of `name`, in the declared order, cast to
    the declared types: optional columns the writer left out are null; a missing required
    column, a column that is not declared, a value that cannot be cast or an unknown tag
    raises LakeError (`check`)."""
    schema = _schema(name)
    _refuse_unknown(name, table)
    for required in REQUIRED.get(name, ()):
        if required not in table.column_names:
            raise LakeError(
                f"table {name}: column {required!r} is missing "
                f"(expected {schema.field(required).type})"
            )
    columns = []
    for column in schema:
        if column.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, column.type))
            continue
        current = table.column(column.name)
        if current.type != column.type:
            try:
                current = current.cast(column.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise LakeError(
                    f"table {name}: column {column.name!r} ({current.type}) "
                    f"cannot be cast to {column.type}: {exc}"
                ) from exc
        columns.append(current)
    out = pa.Table.from_arrays(columns, schema=schema)
    check(name, out)
    return out


def filled(columns: dict[str, Any], schema: pa.Schema, rows: int) -> pa.Table:
    """A table of `schema` from the `columns` given (Arrow arrays or lists), the rest null.

    >>> filled({"a": [1]}, pa.schema([("a", pa.int64()), ("b", pa.string())]), 1).to_pylist()
    [{'a': 1, 'b': None}]
    """

    def column(field: pa.Field) -> pa.Array:
        if field.name not in columns:
            return pa.nulls(rows, field.type)
        values = columns[field.name]
        values = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values)
        return values.cast(field.type)

    return pa.table({f.name: column(f) for f in schema})


def empty(name: str) -> pa.Table:
    """An empty table with the declared schema."""
    return SCHEMAS[name].empty_table()
