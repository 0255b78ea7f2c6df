"""`where`: one DuckDB boolean expression over `scenes` columns, checked, then evaluated safely.

Two locks, either enough on its own:

1. The expression is parsed by DuckDB as ``SELECT 1 FROM scenes WHERE (<expr>)``: that must be
   exactly one plain SELECT of that shape (so ``1; DROP TABLE scenes`` or a smuggled
   ``) UNION SELECT …`` is refused), and its syntax tree may read no table but `scenes` and
   call no table function (``read_csv``, ``read_text``, ``duckdb_settings()`` …).
2. It is evaluated on a private in-memory DuckDB holding only a copy of the scenes metadata,
   with external access disabled and the configuration locked: no file can be read or
   written and nothing in the lake can change, whatever the expression does.

>>> check("n_pedestrians > 0 AND list_contains(tags, 'night')")
"n_pedestrians > 0 AND list_contains(tags, 'night')"
>>> check("1=1; DROP TABLE scenes")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
flywheel.errors.QueryError: where '1=1; DROP TABLE scenes' is not one expression: ...
"""

from __future__ import annotations

import functools
import json
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from flywheel.errors import QueryError

ROW = "__flywheel_row"


@functools.lru_cache(maxsize=256)  # a pure function of the text; parsing costs ~15 ms
def check(expr: str) -> str:
    """Return `expr` stripped if it is one boolean-looking expression over `scenes`; else raise."""
    if not isinstance(expr, str) or not expr.strip():
        raise QueryError("where is empty; give a DuckDB expression such as 'n_pedestrians > 0'")
    expr = expr.strip()
    query = f"SELECT 1 FROM scenes WHERE ({expr})"
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryError(
            f"where {expr!r} is not one expression: {_first_line(exc)}", where=expr
        ) from exc
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise QueryError(f"where {expr!r} is not one expression (it holds statements)", where=expr)
    tree = json.loads(
        duckdb.connect().execute("SELECT json_serialize_sql($1)", [query]).fetchone()[0]
    )
    if tree.get("error") or len(tree.get("statements", [])) != 1:
        raise QueryError(f"where {expr!r} is not one expression", where=expr)
    node = tree["statements"][0]["node"]
    shape_ok = (
        node.get("type") == "SELECT_NODE"
        and not node.get("modifiers")
        and not node.get("cte_map", {}).get("map")
        and len(node.get("select_list", [])) == 1
        and (node.get("from_table") or {}).get("table_name") == "scenes"
        and not node.get("group_expressions")
        and node.get("having") is None
        and node.get("qualify") is None
        and node.get("where_clause") is not None
    )
    if not shape_ok:
        raise QueryError(
            f"where {expr!r} is not one expression: it closes the WHERE clause and adds a clause "
            "of its own (UNION, GROUP BY, LIMIT …); give only a boolean expression",
            where=expr,
        )
    for found in _walk(node["where_clause"]):
        if found.get("type") == "TABLE_FUNCTION":
            name = (found.get("function") or {}).get("function_name", "a table function")
            raise QueryError(
                f"where {expr!r} calls {name}(): reading files or other sources is refused; "
                "use only columns of scenes",
                where=expr,
            )
        if found.get("type") == "BASE_TABLE" and (
            found.get("table_name") != "scenes"
            or found.get("schema_name")
            or found.get("catalog_name")
        ):
            raise QueryError(
                f"where {expr!r} refers to the table {found.get('table_name')!r}: only columns of "
                "scenes may be used (join other tables with m.sql, then pass scene ids)",
                where=expr,
            )
    return expr


def _walk(node: Any):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def sandbox(meta: pa.Table) -> duckdb.DuckDBPyConnection:
    """A private DuckDB holding only `scenes` (a copy of `meta` plus a row number), locked."""
    con = duckdb.connect(":memory:")
    source = meta.append_column(ROW, pa.array(np.arange(meta.num_rows, dtype=np.int64)))
    con.register("_source", source)
    con.execute("CREATE TABLE scenes AS SELECT * FROM _source")
    con.unregister("_source")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def evaluate(con: duckdb.DuckDBPyConnection, expr: str, count: int) -> np.ndarray:
    """A bool mask over the scenes rows: where `expr` is true (null counts as false)."""
    expr = check(expr)
    try:
        rows = con.execute(f'SELECT "{ROW}" FROM scenes WHERE ({expr})').fetchnumpy()[ROW]
    except duckdb.Error as exc:
        raise QueryError(f"where {expr!r} failed: {_first_line(exc)}", where=expr) from exc
    mask = np.zeros(count, dtype=bool)
    mask[np.asarray(rows, dtype=np.int64)] = True
    return mask
