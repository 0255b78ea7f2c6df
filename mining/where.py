"""`where`: one DuckDB boolean expression over `scenes` columns, checked, then evaluated safely.

Both steps are the core's one read-only runner (`flywheel.query`), the one `mine sql` and
triggers use:

1. `check` parses the expression as ``SELECT 1 FROM scenes WHERE (<expr>)``: that must be
   exactly one plain SELECT of that shape (so ``1; DROP TABLE scenes`` or a smuggled
   ``) UNION SELECT …`` is refused), and its syntax tree may read no table but `scenes` and
   call no table function (``read_csv``, ``read_text``, ``duckdb_settings()`` …). Cached per
   text: the hot path (`Miner.similar` with a `where`) never parses twice.
2. `evaluate` runs it on a private in-memory DuckDB holding only the scenes metadata (an Arrow
   table, not copied), locked (no file access at all, configuration locked), within
   ``[mining] query_timeout_s`` and ``query_memory``.

>>> check("n_pedestrians > 0 AND list_contains(tags, 'night')")
"n_pedestrians > 0 AND list_contains(tags, 'night')"
>>> check("1=1; DROP TABLE scenes")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
flywheel.errors.QueryError: where '1=1; DROP TABLE scenes' is not one expression: ...
"""

from __future__ import annotations

import re

import duckdb
import numpy as np
import pyarrow as pa

from flywheel import query
from flywheel.query import Limits
from flywheel.sql import identifier

ROW = "__flywheel_row"


def check(expr: str) -> str:
    """Return `expr` stripped if it is one boolean-looking expression over `scenes`; else raise."""
    return query.check_expression(expr, "scenes")


def uses_triggers(expr: str) -> bool:
    """Whether `expr` refers to the `triggers` column (the saved triggers whose current hits
    overlap the scene), e.g. ``list_contains(triggers, 'hard_brake_near_ped')``."""
    return _TRIGGERS.search(expr) is not None


_TRIGGERS = re.compile(r'(?<![\w."])"?triggers"?(?![\w"(])', re.IGNORECASE)


def sandbox(
    meta: pa.Table, limits: Limits | None = None, extra: dict[str, pa.Array] | None = None
) -> duckdb.DuckDBPyConnection:
    """A private DuckDB holding only `scenes` (`meta`, any `extra` columns, a row number),
    locked."""
    con = duckdb.connect(":memory:")
    for name, column in (extra or {}).items():
        meta = meta.append_column(name, column)
    source = meta.append_column(ROW, pa.array(np.arange(meta.num_rows, dtype=np.int64)))
    con.register("scenes", source)  # scanned in place: no copy, nothing in DuckDB's memory
    query.lock(con, limits or Limits.from_config())
    return con


def evaluate(
    con: duckdb.DuckDBPyConnection, expr: str, count: int, limits: Limits | None = None
) -> np.ndarray:
    """A bool mask over the scenes rows: where `expr` is true (null counts as false)."""
    expr = check(expr)
    text = f"SELECT {identifier(ROW)} FROM scenes WHERE ({expr})"
    rows = query.run(
        con,
        text,
        lambda c: c.fetchnumpy()[ROW],
        limits or Limits.from_config(),
        what=f"where {expr!r}",
    )
    mask = np.zeros(count, dtype=bool)
    mask[np.asarray(rows, dtype=np.int64)] = True
    return mask
