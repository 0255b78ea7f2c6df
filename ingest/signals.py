"""The signal frame: one row per ego sample, with what the perception saw around it then.

Triggers (`ingest.triggers`) are conditions over this frame, evaluated at every sample rather
than per scene. It is built in DuckDB from the lake's `ego` and `objects` tables: the objects
are aggregated per perception frame (nearest object, nearest in the ego's path, nearest per
category, counts, time to collision), then each ego sample takes the latest perception frame
at or before it (an ASOF join), if that frame is recent enough to still describe the scene.

>>> [c.name for c in COLUMNS][:4]
['t_s', 'speed', 'accel', 'yaw_rate']
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from flywheel import schemas
from flywheel.sql import identifier, literal
from ingest.scenes import VEHICLES

# the perception frame an ego sample takes must be at most this old: a detector at 5 Hz or
# faster always qualifies, and a track that vanished is not carried on for long
OBJECT_STALE_NS = 250_000_000
# an object is in the ego's path when ahead of it and its centre within this of the centre line
PATH_HALF_WIDTH_M = 1.5
# closing slower than this is not an approach: no time to collision
MIN_CLOSING_MPS = 0.1

# category groups of the frame's per-category columns; the lake keeps classes as they come
GROUPS: dict[str, tuple[str, ...]] = {
    "pedestrian": ("pedestrian", "person", "walker"),
    "cyclist": ("cyclist", "bicycle", "bicyclist", "bike", "rider"),
    "vehicle": tuple(sorted(VEHICLES | {"motorcycle", "motorbike", "vehicle", "suv", "pickup"})),
    "animal": ("animal", "dog", "cat", "deer", "horse", "cow", "bird"),
}
# the per-category columns: each group, and "other" for a class in none (unknown, debris, …)
GROUP_NAMES = (*GROUPS, "other")
# an object out of the path (or unseen) for longer than this enters it anew: a lead that
# wanders past the edge of the straight corridor on a bend stays old
PATH_REENTRY_NS = 3_000_000_000


@dataclass(frozen=True)
class Column:
    """One column of the frame, as `flywheel trigger columns` lists it."""

    name: str
    unit: str
    description: str


COLUMNS: tuple[Column, ...] = (
    Column("t_s", "s", "time since the log's first ego sample"),
    Column("speed", "m/s", "ego speed"),
    Column("accel", "m/s²", "ego longitudinal acceleration (negative: braking)"),
    Column("yaw_rate", "rad/s", "ego yaw rate"),
    Column("lateral_accel", "m/s²", "speed × yaw rate: the ego's centripetal acceleration"),
    Column("jerk", "m/s³", "change of accel since the previous sample"),
    Column("x", "m", "ego position, east (map frame)"),
    Column("y", "m", "ego position, north (map frame)"),
    Column("yaw", "rad", "ego heading"),
    Column("n_objects", "count", "objects perceived (0 when none, null without perception)"),
    Column("nearest_m", "m", "distance to the nearest object, anywhere around the ego"),
    Column(
        "nearest_in_path_m",
        "m",
        f"distance to the nearest object ahead within {PATH_HALF_WIDTH_M} m of the centre line",
    ),
    *(
        Column(f"nearest_{group}_m", "m", f"distance to the nearest {group}, anywhere")
        for group in GROUP_NAMES
    ),
    *(
        Column(f"nearest_in_path_{group}_m", "m", f"distance to the nearest {group} in the path")
        for group in GROUP_NAMES
    ),
    *(Column(f"n_{group}s", "count", f"{group}s perceived") for group in GROUP_NAMES),
    Column(
        "in_path_age_s",
        "s",
        "how long the nearest object in the path has been in it (small: it just entered, as "
        "a cut-in or a crossing does; a lead followed for a while is old)",
    ),
    Column(
        "ttc_s",
        "s",
        "time to collision with the objects in the path: distance ahead / closing speed "
        "(null when nothing in the path approaches)",
    ),
)
NAMES = tuple(c.name for c in COLUMNS)


def _groups_relation() -> str:
    """(category, grp) rows as a VALUES relation: a hash join maps each object's class to its
    group far faster than a CASE over lists of names on every row."""
    rows = ", ".join(
        f"({literal(c)}, {literal(g)})" for g, members in GROUPS.items() for c in members
    )
    return f"(VALUES {rows}) AS groups(category, grp)"


def frame_sql(ego: str, objects: str | None) -> str:
    """The frame's SELECT over the relations named `ego` and `objects` (None: no perception).

    Both are SQL relation expressions the caller controls (a view name or a read_parquet call
    it built with `flywheel.sql`), never user text.
    """
    if objects is None:
        object_columns = ", ".join(
            f"NULL::{'BIGINT' if c.name.startswith('n_') else 'DOUBLE'} AS {identifier(c.name)}"
            for c in COLUMNS
            if c.name.startswith(("n_", "nearest", "ttc", "in_path"))
        )
        return f"""
            SELECT e.log_id, e.t_ns, {_ego_columns("e")}, {object_columns}
            FROM {ego} e
        """
    stale = OBJECT_STALE_NS
    nearest = []
    for group in GROUP_NAMES:
        g = literal(group)
        nearest.append(f"min(distance) FILTER (grp = {g}) AS nearest_{group}_m")
        nearest.append(f"min(distance) FILTER (grp = {g} AND in_path) AS nearest_in_path_{group}_m")
        nearest.append(f"count(*) FILTER (grp = {g}) AS n_{group}s")
    per_frame = ",\n".join(nearest)
    fresh = f"e.t_ns - f.frame_ns <= {stale}"
    picked = ", ".join(
        f"CASE WHEN {fresh} THEN f.{identifier(c.name)} END AS {identifier(c.name)}"
        if not c.name.startswith("n_")
        else f"CASE WHEN {fresh} THEN f.{identifier(c.name)} "
        f"WHEN f.frame_ns IS NOT NULL OR p.has THEN 0 END AS {identifier(c.name)}"
        for c in COLUMNS
        if c.name.startswith(("n_", "nearest", "ttc", "in_path"))
    )
    return f"""
        WITH o AS (
            SELECT ob.log_id, ob.t_ns, ob.track_id, ob.x, ob.distance,
                   ob.x > 0 AND abs(ob.y) <= {PATH_HALF_WIDTH_M} AS in_path,
                   coalesce(groups.grp, 'other') AS grp
            FROM {objects} ob LEFT JOIN {_groups_relation()} ON groups.category = ob.category
        ),
        -- per track in the path: its closing speed (how fast its distance ahead shrinks) and
        -- since when it has been in the path; windows over the few objects in the path only
        w AS (
            SELECT log_id, t_ns, x, distance,
                   (lag(x) OVER w - x) / nullif((t_ns - lag(t_ns) OVER w) / 1e9, 0) AS closing,
                   coalesce(t_ns - lag(t_ns) OVER w > {PATH_REENTRY_NS}, true) AS entered,
                   track_id
            FROM o WHERE in_path
            WINDOW w AS (PARTITION BY log_id, track_id ORDER BY t_ns)
        ),
        r AS (
            SELECT *, sum(entered::INT) OVER (PARTITION BY log_id, track_id ORDER BY t_ns) AS stay
            FROM w
        ),
        c AS (
            SELECT log_id, t_ns,
                   min(x / closing) FILTER (closing > {MIN_CLOSING_MPS}) AS ttc_s,
                   arg_min(age, distance) AS in_path_age_s
            FROM (
                SELECT *, (t_ns - min(t_ns) OVER (PARTITION BY log_id, track_id, stay)) / 1e9
                          AS age
                FROM r
            ) GROUP BY log_id, t_ns
        ),
        f AS (
            SELECT g.*, c.ttc_s, c.in_path_age_s FROM (
                SELECT log_id, t_ns AS frame_ns,
                       count(*) AS n_objects,
                       min(distance) AS nearest_m,
                       min(distance) FILTER (in_path) AS nearest_in_path_m,
                       {per_frame}
                FROM o GROUP BY log_id, t_ns
            ) g LEFT JOIN c ON c.log_id = g.log_id AND c.t_ns = g.frame_ns
        ),
        p AS (SELECT DISTINCT log_id, true AS has FROM o)
        SELECT e.log_id, e.t_ns, {_ego_columns("e")}, {picked}
        FROM {ego} e
        ASOF LEFT JOIN f ON e.log_id = f.log_id AND e.t_ns >= f.frame_ns
        LEFT JOIN p ON p.log_id = e.log_id
    """


def _ego_columns(e: str) -> str:
    return f"""
        ({e}.t_ns - min({e}.t_ns) OVER (PARTITION BY {e}.log_id)) / 1e9 AS t_s,
        {e}.speed, {e}.accel, {e}.yaw_rate,
        {e}.speed * {e}.yaw_rate AS lateral_accel,
        ({e}.accel - lag({e}.accel) OVER (PARTITION BY {e}.log_id ORDER BY {e}.t_ns))
            / nullif(({e}.t_ns - lag({e}.t_ns) OVER (PARTITION BY {e}.log_id ORDER BY {e}.t_ns))
                     / 1e9, 0) AS jerk,
        {e}.x, {e}.y, {e}.yaw
    """


# what the stored frame of a log (`signals`) was built by: another version is built again
FRAME_VERSION = hashlib.sha256(
    (frame_sql("ego", "objects") + frame_sql("ego", None)).encode()
).hexdigest()[:12]


def frame_table(log_id: str, ego: pa.Table, objects: pa.Table | None) -> pa.Table:
    """The frame of one log as the `signals` table's rows, from its decoded `ego` and
    `objects` (at ingest, before they are written): DuckDB over the Arrow tables in memory."""
    con = duckdb.connect()
    try:
        # one log is small and ingest runs logs in parallel: a second thread only costs here
        con.execute("SET threads = 1")
        con.register("_ego", _with_log(ego, log_id))
        has_objects = objects is not None and objects.num_rows > 0
        if has_objects:
            con.register("_objects", _with_log(objects, log_id))
        query = frame_sql("_ego", "_objects" if has_objects else None)
        table = con.sql(
            f"SELECT *, {literal(FRAME_VERSION)} AS frame_version FROM ({query}) ORDER BY t_ns"
        ).to_arrow_table()
    finally:
        con.close()
    return schemas.conform("signals", table)


def _with_log(table: pa.Table, log_id: str) -> pa.Table:
    if "log_id" in table.column_names:
        table = table.drop_columns(["log_id"])
    return table.append_column("log_id", pa.array([log_id] * table.num_rows, pa.string()))


def build(
    con: duckdb.DuckDBPyConnection,
    frame: str,
    derived: Mapping[str, str] | None = None,
    into: str = "frame",
) -> Sequence[str]:
    """Materialise the frame as the temporary table `into` from `frame` (a SELECT giving the
    frame's rows: `frame_sql`, or stored `signals` rows), with the user's derived columns
    (name -> DuckDB expression over the frame, checked by the caller) added; its columns."""
    derived = dict(derived or {})
    extra = "".join(f", ({expr}) AS {identifier(name)}" for name, expr in derived.items())
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {identifier(into)} AS "
        f"SELECT *{extra} FROM ({frame}) ORDER BY log_id, t_ns"
    )
    return [r[0] for r in con.execute(f"DESCRIBE {identifier(into)}").fetchall()]
