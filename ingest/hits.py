"""Hits: the time ranges where a trigger's condition holds over the signal frame.

A hit is a maximal run of consecutive samples of one log where the condition is true (null
counts as false). DuckDB evaluates the condition over the frame (it is SQL, and the frame is
a DuckDB table); the runs are then found on the frame's sorted row numbers with NumPy in one
vectorised pass, never a Python loop over samples. Runs closer than `gap_s` are bridged into
one; runs shorter than `for_s` are dropped; with `then`, a hit is a run of the condition
followed, within `within_s` of its end, by a run of the second condition, and spans both. A
hit is never cut at a scene boundary: scenes are looked up afterwards, as the ones holding at
least one of its samples.

>>> Spec(when="accel < -4", for_s=0.5).for_s
0.5
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flywheel import query
from flywheel.query import Limits
from flywheel.sql import identifier

NS = 1_000_000_000
# the frame columns whose extremes over a hit are kept with it (min or max, as it matters)
PEAKS = (
    ("max_speed", "max", "speed"),
    ("min_accel", "min", "accel"),
    ("min_nearest_m", "min", "nearest_m"),
    ("min_nearest_in_path_m", "min", "nearest_in_path_m"),
    ("min_ttc_s", "min", "ttc_s"),
)


@dataclass(frozen=True)
class Spec:
    """A trigger's condition: `when` held for `for_s`, gaps up to `gap_s` bridged, optionally
    followed by `then` within `within_s`. Expressions are checked before they get here."""

    when: str
    for_s: float = 0.0
    gap_s: float = 0.0
    then: str | None = None
    within_s: float | None = None


class Frame:
    """The frame table's row order, log ids, times and peak columns, fetched once so that many
    conditions can be evaluated on it (each costs one DuckDB filter and NumPy)."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, table: str = "frame", limits: Limits | None = None
    ) -> None:
        self.con, self.name = con, identifier(table)
        self.limits = limits or Limits.from_config()
        cols = ", ".join(col for _, _, col in PEAKS)
        data = con.sql(f"SELECT log_id, t_ns, {cols} FROM {self.name} ORDER BY rowid")
        data = data.to_arrow_table()
        # log ids as codes: Arrow's dictionary encoding, not a sort of Python strings
        logs = pc.dictionary_encode(data["log_id"]).combine_chunks()
        self.log_ids = np.asarray(logs.dictionary.to_pylist(), dtype=object)
        self.log = logs.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        self.t = data["t_ns"].to_numpy().astype(np.int64)
        self.peaks = {
            col: data[col].to_numpy().astype(np.float64)  # nulls come as NaN
            for _, _, col in PEAKS
        }
        self.n = len(self.t)

    def mask(self, expr: str) -> np.ndarray:
        """Rows where `expr` is true (null counts as false)."""
        # the condition is user text (checked before): bounded like every user query
        rows = query.run(
            self.con,
            f"SELECT rowid FROM {self.name} WHERE ({expr})",
            lambda c: c.fetchnumpy()["rowid"],
            self.limits,
            what="trigger condition",
        )
        mask = np.zeros(self.n, dtype=bool)
        mask[np.asarray(rows, dtype=np.int64)] = True
        return mask

    def runs(self, mask: np.ndarray, gap_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(first row, last row) of each maximal run of `mask` within one log, with runs of a
        log that are at most `gap_s` apart bridged."""
        rows = np.flatnonzero(mask)
        if not len(rows):
            return rows, rows
        new = np.ones(len(rows), dtype=bool)
        new[1:] = (np.diff(rows) != 1) | (self.log[rows[1:]] != self.log[rows[:-1]])
        first = rows[new]
        last = rows[np.r_[np.flatnonzero(new)[1:] - 1, len(rows) - 1]]
        if gap_s > 0 and len(first) > 1:
            same_log = self.log[first[1:]] == self.log[last[:-1]]
            close = self.t[first[1:]] - self.t[last[:-1]] <= round(gap_s * NS)
            keep = np.r_[True, ~(same_log & close)]
            first, last = first[keep], last[np.r_[np.flatnonzero(keep)[1:] - 1, len(keep) - 1]]
        return first, last

    def hits(self, spec: Spec) -> tuple[np.ndarray, np.ndarray]:
        """(first row, last row) of each hit of `spec`, in row (log, time) order."""
        first, last = self.runs(self.mask(spec.when), spec.gap_s)
        held = self.t[last] - self.t[first] >= round(spec.for_s * NS)
        first, last = first[held], last[held]
        if spec.then is None or not len(first):
            return first, last
        b_first, b_last = self.runs(self.mask(spec.then), spec.gap_s)
        # the first run of `then` that starts after the run of `when` ends
        nxt = np.searchsorted(b_first, last, side="right")
        ok = nxt < len(b_first)
        nxt_c = np.minimum(nxt, max(len(b_first) - 1, 0))
        if len(b_first):
            ok &= self.log[b_first[nxt_c]] == self.log[last]
            ok &= self.t[b_first[nxt_c]] - self.t[last] <= round((spec.within_s or 0) * NS)
        else:
            ok[:] = False
        return first[ok], b_last[nxt_c[ok]]

    def table(self, first: np.ndarray, last: np.ndarray) -> pa.Table:
        """Hits as rows: log_id, start_ns, end_ns and the peaks over each hit's samples."""
        columns: dict[str, object] = {
            "log_id": pa.array(self.log_ids[self.log[first]].tolist(), pa.string()),
            "start_ns": pa.array(self.t[first], pa.int64()),
            "end_ns": pa.array(self.t[last], pa.int64()),
        }
        for name, fn, col in PEAKS:
            values = self.peaks[col]
            if not len(first):
                columns[name] = pa.array([], pa.float64())
                continue
            filled = np.where(np.isnan(values), np.inf if fn == "min" else -np.inf, values)
            reduce = np.minimum if fn == "min" else np.maximum
            # one reduceat over [first, last + 1) pairs; the even slots are the spans
            bounds = np.column_stack([first, last + 1]).ravel()
            peak = reduce.reduceat(np.r_[filled, 0.0], bounds)[::2]
            peak[~np.isfinite(peak)] = np.nan
            columns[name] = pa.array(peak, pa.float64(), from_pandas=True)
        return pa.table(columns)


def find(
    con: duckdb.DuckDBPyConnection,
    spec: Spec,
    frame: str | Frame = "frame",
    scenes: str | None = "scenes",
) -> pa.Table:
    """The hits of `spec` over the frame table `frame` (or a fetched `Frame`), with the ids of
    the scenes (from the relation `scenes`, None for none) holding their samples; one row per
    hit, in log and time order."""
    fetched = frame if isinstance(frame, Frame) else Frame(con, frame)
    found = fetched.table(*fetched.hits(spec))
    if scenes is None or not found.num_rows:
        empty = pa.array([[] for _ in range(found.num_rows)], pa.list_(pa.string()))
        return found.append_column("scene_ids", empty)
    con.register("_hits", found.append_column("_hit", pa.array(np.arange(found.num_rows))))
    try:
        ids = con.sql(f"""
            SELECT coalesce(list(s.scene_id ORDER BY s.start_ns)
                            FILTER (s.scene_id IS NOT NULL), []) AS scene_ids
            FROM _hits h LEFT JOIN {scenes} s
              ON s.log_id = h.log_id AND s.start_ns <= h.end_ns AND s.end_ns > h.start_ns
            GROUP BY h._hit ORDER BY h._hit""").to_arrow_table()["scene_ids"]
    finally:
        con.unregister("_hits")
    return found.append_column("scene_ids", ids.cast(pa.list_(pa.string())))
