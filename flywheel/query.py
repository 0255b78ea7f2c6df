"""Text nobody vetted, run safely: the one read-only runner for every query a person types.

`mine sql`, `m.sql`, `where` (in similar and rare) and trigger expressions all go through this
module (docs/contract.md §5, §11). Two locks, either enough on its own for what it stops:

1. The text is parsed by DuckDB and checked before anything runs (`check_sql`,
   `check_expression`): one statement of a type that only reads (SELECT, with DESCRIBE, SHOW
   and SUMMARIZE, which DuckDB parses as SELECT; or EXPLAIN [ANALYZE] of one), whose syntax
   tree reads no table but the lake's and calls no table function that reaches outside the
   query (read_csv, read_parquet, glob, query, duckdb_settings …); a file name in FROM is a
   table name like any other, so it is refused too. No COPY, ATTACH, INSTALL, LOAD, SET,
   PRAGMA, CALL, DDL or DML. A check is cached per text: a repeated filter is parsed once.
2. It runs on a connection that cannot reach anything else (`connect`, `lock`): DuckDB opens
   only the exact files the lake's views read (``allowed_paths``, external access off), loads
   and installs no extension, scans no Python variable, and its configuration is locked, so no
   statement can undo any of it.

Every run is bounded (`run`): ``[mining] query_timeout_s`` (a timer interrupts the connection)
and ``[mining] query_memory`` (DuckDB's memory_limit, with no spilling to disk). Hitting either
is a `QueryError` that names the setting to raise; Ctrl-C is a KeyboardInterrupt, as anywhere.

>>> check_sql("SELECT scene_id FROM scenes WHERE min_accel < -4")
'SELECT scene_id FROM scenes WHERE min_accel < -4'
>>> check_sql("COPY scenes TO '/tmp/x.csv'")
Traceback (most recent call last):
...
flywheel.errors.QueryError: query refused: COPY is not a read; give one SELECT (or DESCRIBE, SUMMARIZE, SHOW or EXPLAIN of one)
"""  # noqa: E501

from __future__ import annotations

import functools
import json
import re
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb

from flywheel import schemas
from flywheel.errors import QueryError
from flywheel.sql import glob_escape, identifier, literal

if TYPE_CHECKING:
    import pandas as pd

    from flywheel.lake import Lake, LakeConnection, Snapshot

R = TypeVar("R")

# Table functions that read nothing but their arguments.
PURE_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
_EXPLAIN = re.compile(
    r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*EXPLAIN\s+(?:ANALY[SZ]E\s+)?(?:\([^()]*\)\s*)?",
    re.IGNORECASE | re.DOTALL,
)
_TIMEOUT_HINT = (
    "narrow the query (a WHERE, a LIMIT) or raise [mining] query_timeout_s in flywheel.toml"
)


@dataclass(frozen=True)
class Limits:
    """What one query may take: wall time and memory (``[mining]`` in flywheel.toml).

    >>> Limits(timeout_s=5, memory="512MB").timeout_s
    5
    """

    timeout_s: float = 60.0
    memory: str = "4GB"

    @classmethod
    def from_config(cls, config: Any = None) -> Limits:
        """The limits of the resolved configuration (flywheel.toml, environment)."""
        if config is None:
            from flywheel.config import load_config

            config = load_config()
        return cls(config.mining.query_timeout_s, config.mining.query_memory)


# -- checks ---------------------------------------------------------------------------------------
def check_sql(text: str) -> str:
    """`text` if it is one read-only statement over the lake's tables; else QueryError."""
    if not isinstance(text, str) or not text.strip():
        raise QueryError("query is empty; give a SELECT, e.g. 'SELECT * FROM scenes LIMIT 10'")
    return _check_sql(text)


@functools.lru_cache(maxsize=512)  # a pure function of the text: parsing costs milliseconds
def _check_sql(text: str) -> str:
    select = text
    statement = _one_statement(text, "query")
    if statement.type == duckdb.StatementType.EXPLAIN:
        peeled = _EXPLAIN.match(text)
        select = text[peeled.end() :] if peeled else ""
        statement = _one_statement(select, "query") if select.strip() else statement
    if statement.type == duckdb.StatementType.MULTI:
        raise QueryError(
            "query refused: it expands to several statements (PIVOT does), which cannot be "
            "checked; write it with GROUP BY instead",
            query=text,
        )
    if statement.type != duckdb.StatementType.SELECT:
        kind = _statement_kind(statement)
        raise QueryError(
            f"query refused: {kind} is not a read; give one SELECT (or DESCRIBE, SUMMARIZE, "
            "SHOW or EXPLAIN of one)",
            query=text,
        )
    node = _tree(select, "query", text)
    tables = frozenset(schemas.QUERYABLE)
    outside = _reaches_outside(node, tables, PURE_TABLE_FUNCTIONS)
    if outside and outside[0] == "function":
        raise QueryError(
            f"query refused: it calls {outside[1]}(), which reads outside the lake's tables "
            "(files, settings, other sources); query the tables by name instead",
            query=text,
        )
    if outside:
        raise QueryError(
            f"query refused: it reads {outside[1]!r}, which is not a table of the lake "
            f"(tables: {', '.join(sorted(tables))})",
            query=text,
        )
    return text


def check_expression(
    expr: str, table: str = "scenes", columns: Iterable[str] = (), what: str = "where"
) -> str:
    """`expr` stripped, if it is one boolean-looking expression over the columns of `table`
    (and, when `columns` is given, only those); else QueryError saying why.

    >>> check_expression("n_pedestrians > 0 AND list_contains(tags, 'night')")
    "n_pedestrians > 0 AND list_contains(tags, 'night')"
    """
    if not isinstance(expr, str) or not expr.strip():
        raise QueryError(
            f"{what} is empty; give a DuckDB expression such as 'n_pedestrians > 0'",
            where=expr if isinstance(expr, str) else repr(expr),
        )
    return _check_expression(expr.strip(), table, tuple(columns), what)


@functools.lru_cache(maxsize=512)
def _check_expression(expr: str, table: str, columns: tuple[str, ...], what: str) -> str:
    query = f"SELECT 1 FROM {identifier(table)} WHERE ({expr})"
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryError(
            f"{what} {expr!r} is not one expression: {_first_line(exc)}", where=expr
        ) from exc
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise QueryError(f"{what} {expr!r} is not one expression (it holds statements)", where=expr)
    node = _tree(query, what, expr)
    shape_ok = (
        node.get("type") == "SELECT_NODE"
        and not node.get("modifiers")
        and not node.get("cte_map", {}).get("map")
        and len(node.get("select_list", [])) == 1
        and (node.get("from_table") or {}).get("type") == "BASE_TABLE"
        and (node.get("from_table") or {}).get("table_name") == table
        and not node.get("group_expressions")
        and node.get("having") is None
        and node.get("qualify") is None
        and node.get("where_clause") is not None
    )
    if not shape_ok:
        raise QueryError(
            f"{what} {expr!r} is not one expression: it closes the WHERE clause and adds a clause "
            "of its own (UNION, GROUP BY, LIMIT …); give only a boolean expression",
            where=expr,
        )
    outside = _reaches_outside(node["where_clause"], frozenset({table}), frozenset())
    hint = " (join other tables with m.sql, then pass scene ids)" if table == "scenes" else ""
    if outside and outside[0] == "function":
        raise QueryError(
            f"{what} {expr!r} calls {outside[1]}(): reading files or other sources is refused; "
            f"use only columns of {table}{hint}",
            where=expr,
        )
    if outside:
        raise QueryError(
            f"{what} {expr!r} refers to the table {outside[1]!r}: only columns of {table} may "
            f"be used{hint}",
            where=expr,
        )
    known = set(columns)
    if known:
        unknown = sorted(_column_names(node["where_clause"], table) - known)
        if unknown:
            raise QueryError(
                f"{what} {expr!r} uses {', '.join(map(repr, unknown))}, not a column of {table}; "
                f"columns: {', '.join(sorted(known))}",
                where=expr,
            )
    return expr


def _one_statement(text: str, what: str) -> Any:
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as exc:
        raise QueryError(f"{what} does not parse: {_first_line(exc)}", query=text) from exc
    if len(statements) != 1:
        raise QueryError(
            f"{what} refused: it holds {len(statements)} statements; give exactly one",
            query=text,
        )
    return statements[0]


def _statement_kind(statement: Any) -> str:
    words = statement.query.split()
    first = next((w for w in words if not w.startswith(("--", "/*"))), "")
    kind = str(statement.type).rpartition(".")[2]
    return first.upper() if first.isalpha() else kind


_PARSER_LOCK = threading.Lock()
_PARSER: list[duckdb.DuckDBPyConnection] = []  # made on first use: importing has no side effect


def _tree(text: str, what: str, shown: str) -> dict:
    """The syntax tree of the one SELECT in `text` (DuckDB's json_serialize_sql)."""
    with _PARSER_LOCK:
        if not _PARSER:
            _PARSER.append(duckdb.connect(":memory:"))
        row = _PARSER[0].execute("SELECT json_serialize_sql($1)", [text]).fetchall()[0]
    tree = json.loads(row[0])
    if tree.get("error") or len(tree.get("statements", [])) != 1:
        reason = tree.get("error_message") or "not one statement"
        raise QueryError(
            f"{what} {shown!r} cannot be checked, so it is refused ({reason}); "
            "PIVOT and other statements inside a query are not supported here",
            query=shown,
        )
    return tree["statements"][0]["node"]


def _walk(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _reaches_outside(
    node: dict, tables: frozenset[str], functions: frozenset[str]
) -> tuple[str, str] | None:
    """("function", name) or ("table", name) of the first thing the tree `node` reads beyond
    `tables` (and its own CTEs) and `functions`; None when it reads nothing else."""
    nodes = list(_walk(node))
    ctes = {
        entry.get("key")
        for found in nodes
        for entry in (found.get("cte_map") or {}).get("map", [])
        if isinstance(entry, dict)
    }
    for found in nodes:
        kind = found.get("type")
        if kind == "TABLE_FUNCTION":
            name = str((found.get("function") or {}).get("function_name", "a table function"))
            if name.lower() not in functions:
                return "function", name
        elif kind == "BASE_TABLE" or (kind == "SHOW_REF" and found.get("query") is None):
            if kind == "SHOW_REF" and found.get("show_type") == "SHOW_SPECIAL":
                continue  # SHOW TABLES, SHOW DATABASES: the catalog's own listing
            table = found.get("table_name")
            parts = (found.get("catalog_name"), found.get("schema_name"), table)
            if parts[0] or parts[1] or (table not in tables and table not in ctes):
                return "table", ".".join(p for p in parts if p)
    return None


def _column_names(node: dict, table: str) -> set[str]:
    """The columns an expression refers to (lambda parameters and `table.` prefixes aside)."""
    nodes = list(_walk(node))
    parameters = {
        ref["column_names"][-1]
        for lam in nodes
        if lam.get("type") == "LAMBDA"
        for ref in _walk(lam.get("lhs"))
        if ref.get("type") == "COLUMN_REF" and ref.get("column_names")
    }
    names = set()
    for found in nodes:
        if found.get("type") == "COLUMN_REF" and found.get("column_names"):
            parts = found["column_names"]
            name = parts[1] if len(parts) > 1 and parts[0] == table else parts[0]
            if name not in parameters:
                names.add(name)
    return names


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


# -- the locked connection and the bounded run ----------------------------------------------------
def lock(
    con: duckdb.DuckDBPyConnection | LakeConnection, limits: Limits, paths: Iterable[str] = ()
) -> None:
    """Lock `con` down for user text: DuckDB may open only `paths` (exactly those files), no
    extension is installed or loaded, memory is bounded without spilling, and the
    configuration is locked so that nothing run later can change it."""
    allowed = sorted({p for raw in paths for p in (raw, glob_escape(raw))})
    for statement in (
        "SET python_enable_replacements = false",  # no DataFrame found by a variable's name
        "SET autoinstall_known_extensions = false",
        "SET autoload_known_extensions = false",
        "SET allow_community_extensions = false",
        f"SET memory_limit = {literal(limits.memory)}",
        "SET temp_directory = ''",  # the limit holds: nothing spills (nor lands beside us)
        f"SET allowed_paths = [{', '.join(literal(p) for p in allowed)}]",
        "SET enable_external_access = false",
        "SET lock_configuration = true",
    ):
        con.execute(statement)


def connect(
    lake: Lake, limits: Limits | None = None, snapshot: Snapshot | None = None
) -> LakeConnection:
    """A locked connection (see `lock`) with the lake's views over one snapshot of its files.

    >>> from flywheel.lake import Lake
    >>> con = connect(Lake(lake), Limits(memory="256MB"))
    >>> run(con, "SELECT count(*) AS n FROM scenes", lambda c: c.fetchall(), Limits())
    [(6,)]
    """
    snapshot = snapshot or lake.snapshot()
    con = lake.connect(snapshot=snapshot)
    try:
        paths = [lake.source(f) for files in snapshot.files.values() for f in files]
        lock(con, limits or Limits.from_config(), paths)
    except BaseException:
        con.close()
        raise
    return con


class _Deadline:
    """Interrupts `con` after `seconds`, unless the work finished first."""

    def __init__(self, con: duckdb.DuckDBPyConnection | LakeConnection, seconds: float) -> None:
        self.con, self.fired, self._done = con, False, False
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        with self._lock:
            if not self._done:
                self.fired = True
                self.con.interrupt()

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()


class _CtrlC:
    """Ctrl-C during a query interrupts DuckDB (which does not look at Python's signals while
    it runs), then surfaces as KeyboardInterrupt. Only on the main thread, where signals land."""

    def __init__(self, con: duckdb.DuckDBPyConnection | LakeConnection) -> None:
        self.con, self.fired, self._installed = con, False, False
        self._previous: Any = None

    def _handle(self, signum: int, frame: object) -> None:
        self.fired = True
        self.con.interrupt()

    def __enter__(self) -> _CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:  # None: a handler not set from Python; Python's own is the default
            signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)
        if self.fired and exc[0] is None:
            raise KeyboardInterrupt  # it came after the query had finished


def run(
    con: duckdb.DuckDBPyConnection | LakeConnection,
    text: str,
    fetch: Callable[[Any], R],
    limits: Limits,
    params: list | dict | None = None,
    what: str = "query",
) -> R:
    """Execute checked `text` on `con` and `fetch(con)` its result, within `limits`.

    A DuckDB failure is a QueryError (its cause kept as ``__cause__``); running past
    `limits.timeout_s` or `limits.memory` is a QueryError naming the setting to raise.
    """
    deadline = _Deadline(con, limits.timeout_s)
    ctrl_c = _CtrlC(con)
    try:
        with deadline, ctrl_c:
            con.execute(text, params) if params is not None else con.execute(text)
            return fetch(con)
    except (duckdb.Error, RuntimeError) as exc:
        if ctrl_c.fired:
            raise KeyboardInterrupt from None
        if deadline.fired:
            raise QueryError(
                f"{what} stopped after {limits.timeout_s:g} s, the limit [mining] "
                f"query_timeout_s sets: {_TIMEOUT_HINT}",
                limit="query_timeout_s",
            ) from None
        if isinstance(exc, duckdb.InterruptException) or is_interrupt(exc):
            raise KeyboardInterrupt from None  # Ctrl-C reached DuckDB first
        if isinstance(exc, duckdb.OutOfMemoryException):
            raise QueryError(
                f"{what} needs more memory than [mining] query_memory ({limits.memory}) allows: "
                "narrow the query or raise query_memory in flywheel.toml",
                limit="query_memory",
            ) from exc
        if isinstance(exc, RuntimeError) and not isinstance(exc, duckdb.Error):
            raise
        raise QueryError(f"{what} failed: {_first_line(exc)}", query=text) from exc


def is_interrupt(exc: BaseException) -> bool:
    """Whether `exc` is DuckDB reporting a Ctrl-C it caught during a query (it raises a
    plain RuntimeError, not KeyboardInterrupt)."""
    return type(exc) is RuntimeError and "interrupted" in str(exc).lower()


def sql(lake: Lake, text: str, limits: Limits | None = None) -> pd.DataFrame:
    """Run user SQL over the lake read-only and bounded (the runner of `mine sql`, `m.sql`).

    Once more on a fresh snapshot when a file it listed was replaced meanwhile.

    >>> from flywheel.lake import Lake
    >>> sql(Lake(lake), "SELECT count(*) AS n FROM logs")["n"].tolist()
    [2]
    """
    text = check_sql(text)
    limits = limits or Limits.from_config()
    snapshot = lake.snapshot()
    for attempt in (1, 2):
        try:
            con = connect(lake, limits, snapshot)
            try:
                return run(con, text, lambda c: c.df(), limits)
            finally:
                con.close()
        except (QueryError, duckdb.IOException, duckdb.InvalidInputException) as exc:
            cause = exc.__cause__ if isinstance(exc, QueryError) else exc
            if attempt == 2 or not isinstance(
                cause, duckdb.IOException | duckdb.InvalidInputException
            ):
                raise
            fresh = lake.snapshot()
            if fresh == snapshot:
                raise
            snapshot = fresh  # a log was replaced under the query: read the new lake
    raise AssertionError("unreachable")


__all__ = [
    "Limits",
    "check_expression",
    "check_sql",
    "connect",
    "is_interrupt",
    "lock",
    "run",
    "sql",
]
