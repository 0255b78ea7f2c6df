"""The lake's tables: one Arrow schema per table, declared once (CONTRACT §2).

Each schema lists the columns every row of that table has. Writers may add columns
(``ego`` and ``scenes`` carry more than the contract requires); `check` verifies that a
table holds at least these columns with these types and names the column that is wrong.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from flywheel.errors import LakeError

UTC_TS = pa.timestamp("us", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    "logs": pa.schema(
        [
            ("log_id", pa.string()),
            ("source_uri", pa.string()),
            ("bytes", pa.int64()),
            ("message_count", pa.int64()),
            ("start_ns", pa.int64()),
            ("end_ns", pa.int64()),
            ("ingested_at", UTC_TS),
            # what the file's own index, statistics or metadata list (null when nothing says),
            # and whether every one of them landed (CONTRACT §11)
            ("expected_messages", pa.int64()),
            ("complete", pa.bool_()),
        ]
    ),
    "ego": pa.schema(
        [
            ("log_id", pa.string()),
            ("t_ns", pa.int64()),
            ("x", pa.float64()),
            ("y", pa.float64()),
            ("yaw", pa.float64()),
            ("speed", pa.float64()),
            ("accel", pa.float64()),
            ("yaw_rate", pa.float64()),
        ]
    ),
    "gnss": pa.schema(
        [
            ("log_id", pa.string()),
            ("t_ns", pa.int64()),
            ("lat", pa.float64()),
            ("lon", pa.float64()),
            ("alt", pa.float64()),
        ]
    ),
    "imu": pa.schema(
        [
            ("log_id", pa.string()),
            ("t_ns", pa.int64()),
            ("ax", pa.float64()),
            ("ay", pa.float64()),
            ("az", pa.float64()),
            ("wx", pa.float64()),
            ("wy", pa.float64()),
            ("wz", pa.float64()),
        ]
    ),
    "objects": pa.schema(
        [
            ("log_id", pa.string()),
            ("t_ns", pa.int64()),
            ("track_id", pa.string()),
            ("category", pa.string()),
            ("x", pa.float64()),
            ("y", pa.float64()),
            ("distance", pa.float64()),
            ("length", pa.float64()),
            ("width", pa.float64()),
            ("score", pa.float64()),
        ]
    ),
    "scenes": pa.schema(
        [
            ("scene_id", pa.string()),
            ("log_id", pa.string()),
            ("start_ns", pa.int64()),
            ("end_ns", pa.int64()),
            ("max_speed", pa.float64()),
            ("min_accel", pa.float64()),
            ("min_object_distance", pa.float64()),
            ("n_tracks", pa.int64()),
            ("n_pedestrians", pa.int64()),
            ("n_vehicles", pa.int64()),
            ("tags", pa.list_(pa.string())),
            ("embedding", pa.list_(pa.float32())),
            ("embedding_version", pa.string()),
        ]
    ),
    "quarantine": pa.schema(
        [
            ("source_uri", pa.string()),
            ("reason", pa.string()),
            ("at", UTC_TS),
            ("sha256", pa.string()),
            ("bytes", pa.int64()),
        ]
    ),
    "selections": pa.schema(
        [
            ("selection", pa.string()),
            ("scene_id", pa.string()),
            ("score", pa.float64()),
            ("rank", pa.int64()),
            ("query", pa.string()),
            ("created_at", UTC_TS),
        ]
    ),
    "tasks": pa.schema(
        [
            ("batch_id", pa.string()),
            ("scene_id", pa.string()),
            ("vendor", pa.string()),
            ("external_id", pa.string()),
            ("status", pa.string()),
            ("submitted_at", UTC_TS),
            ("completed_at", UTC_TS),
        ]
    ),
    "labels": pa.schema(
        [
            ("batch_id", pa.string()),
            ("scene_id", pa.string()),
            ("vendor", pa.string()),
            ("annotator", pa.string()),
            ("result", pa.string()),
            ("completed_at", UTC_TS),
        ]
    ),
    "events": pa.schema(
        [
            ("entity_id", pa.string()),
            ("stage", pa.string()),
            ("at", UTC_TS),
            ("attrs", pa.string()),
        ]
    ),
    # triggers (ingest.triggers): one row per version of a definition
    "triggers": pa.schema(
        [
            ("name", pa.string()),
            ("version", pa.int64()),
            ("when", pa.string()),
            ("for_s", pa.float64()),
            ("gap_s", pa.float64()),
            ("then", pa.string()),
            ("within_s", pa.float64()),
            ("digest", pa.string()),
            ("added_at", UTC_TS),
        ]
    ),
    # one row per (trigger version, log) evaluated: it publishes that run's hits
    "trigger_runs": pa.schema(
        [
            ("run_id", pa.string()),
            ("trigger", pa.string()),
            ("version", pa.int64()),
            ("log_id", pa.string()),
            ("hits", pa.int64()),
            ("at", UTC_TS),
        ]
    ),
    "trigger_hits": pa.schema(
        [
            ("trigger", pa.string()),
            ("version", pa.int64()),
            ("run_id", pa.string()),
            ("log_id", pa.string()),
            ("start_ns", pa.int64()),
            ("end_ns", pa.int64()),
            ("max_speed", pa.float64()),
            ("min_accel", pa.float64()),
            ("min_nearest_m", pa.float64()),
            ("min_nearest_in_path_m", pa.float64()),
            ("min_ttc_s", pa.float64()),
            ("scene_ids", pa.list_(pa.string())),
        ]
    ),
}

# Tables whose rows belong to one ingested log: they are visible only once the log's row in
# `logs` is published, so a crash between writing them and publishing the log hides them.
PER_LOG_TABLES = ("ego", "gnss", "imu", "objects", "scenes")

TABLES = tuple(SCHEMAS)

# Tables a stage keeps whose full schema that stage declares next to its code (labeling's
# outbox: labeling/_store.py BATCH_SCHEMA). With TABLES they are every name the lake reads as a
# table: a folder of any other name is not a table and never becomes a view (or SQL).
STAGE_TABLES = ("batches",)
KNOWN_TABLES = TABLES + STAGE_TABLES


def check(name: str, table: pa.Table) -> None:
    """Raise LakeError naming the first required column that is missing or of the wrong type.

    >>> check("gnss", pa.table({"log_id": ["a"]}))
    Traceback (most recent call last):
    ...
    flywheel.errors.LakeError: table gnss: column 't_ns' is missing (expected int64)
    """
    schema = SCHEMAS[name]
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


# Columns declared after writers of the table existed: a writer that does not set them gets
# nulls from `conform` (unknown), so its rows stay valid and every file has the column.
LATE_COLUMNS = {"logs": ("expected_messages", "complete")}


def conform(name: str, table: pa.Table) -> pa.Table:
    """Cast the required columns to their declared types (extra columns kept), then `check`."""
    schema = SCHEMAS[name]
    for late in LATE_COLUMNS.get(name, ()):
        if late not in table.column_names:
            table = table.append_column(late, pa.nulls(table.num_rows, schema.field(late).type))
    for column in schema:
        if column.name in table.column_names:
            index = table.column_names.index(column.name)
            current = table.column(index)
            if current.type != column.type:
                try:
                    table = table.set_column(index, column.name, current.cast(column.type))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise LakeError(
                        f"table {name}: column {column.name!r} ({current.type}) "
                        f"cannot be cast to {column.type}: {exc}"
                    ) from exc
    check(name, table)
    return table


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
