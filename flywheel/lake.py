"""The lake: a folder of Parquet tables that every stage reads and writes (CONTRACT §2).

Each table is a folder of Parquet files. A file appears under its final name only when it is
complete: it is written to a hidden temporary name, flushed to disk, then renamed, so a crash
never leaves a half-written file where readers look (readers glob ``*.parquet`` only).

Rows of one log (`ego`, `gnss`, `imu`, `objects`, `scenes`) are written first and the log's row
in `logs` last: that row publishes them. The DuckDB views hide per-log rows whose log is not
published, so a crash between the two leaves the lake consistent and a rerun (which rewrites
the same file names) completes the work exactly once.

>>> lake = Lake("/tmp/flywheel-doctest-lake")
>>> con = lake.connect()
>>> con.execute("SELECT count(*) FROM logs").fetchone()[0] >= 0
True
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel import schemas
from flywheel.config import load_config
from flywheel.errors import LakeError

TEMP_SUFFIX = ".tmp"


class Lake:
    """A lake rooted at a local folder."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().absolute()

    def __repr__(self) -> str:
        return f"Lake({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lake) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    # -- layout -----------------------------------------------------------------------------
    def table_dir(self, table: str) -> Path:
        return self.root / table

    def path(self, table: str, name: str) -> Path:
        """Where the file `name` of `table` lives once published."""
        return self.table_dir(table) / f"{name}.parquet"

    def files(self, table: str) -> list[Path]:
        """Published Parquet files of a table (temporary files are never listed)."""
        folder = self.table_dir(table)
        if not folder.is_dir():
            return []
        return sorted(folder.rglob("*.parquet"))

    def tables(self) -> list[str]:
        """Tables that hold at least one published file."""
        if not self.root.is_dir():
            return []
        found = []
        for child in sorted(self.root.iterdir()):
            if child.is_dir() and not child.name.startswith(("_", ".")) and self.files(child.name):
                found.append(child.name)
        return found

    def exists(self, table: str, name: str) -> bool:
        return self.path(table, name).exists()

    # -- writing ----------------------------------------------------------------------------
    def write(self, table: str, data: pa.Table, name: str | None = None) -> Path:
        """Atomically write `data` as one Parquet file of `table` and return its path.

        `name` makes the write idempotent (the same name replaces the same file); without it a
        unique name is chosen, which is how append-only tables such as `events` grow.
        """
        if table in schemas.SCHEMAS:
            data = schemas.conform(table, data)
        folder = self.table_dir(table)
        folder.mkdir(parents=True, exist_ok=True)
        name = name or f"{time.time_ns()}-{uuid.uuid4().hex[:12]}"
        final = folder / f"{name}.parquet"
        temp = folder / f".{name}.parquet.{os.getpid()}-{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}"
        try:
            pq.write_table(data, temp, compression="zstd")
            with open(temp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(temp, final)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise LakeError(
                f"could not write {table}/{final.name} in {self.root}: {exc.strerror or exc}; "
                "nothing was published, free space or fix permissions and rerun"
            ) from exc
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(folder)
        return final

    def remove(self, table: str, name: str) -> bool:
        """Remove one published file; True if it existed."""
        path = self.path(table, name)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True

    def clean_temporary(self) -> int:
        """Delete temporary files left by writers that died (their process is gone)."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for temp in self.root.rglob(f".*{TEMP_SUFFIX}"):
            pid = temp.name.rsplit(".", 2)[-2].split("-")[0]
            if pid.isdigit() and _alive(int(pid)):
                continue
            temp.unlink(missing_ok=True)
            removed += 1
        return removed

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold an exclusive lock named `name` across processes on this machine."""
        folder = self.root / "_locks"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{name}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- reading ----------------------------------------------------------------------------
    def glob(self, table: str) -> str:
        return str(self.table_dir(table) / "**" / "*.parquet")

    def connect(self, database: str = ":memory:") -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with one view per table of CONTRACT §2 (and any other table).

        Tables with no file yet are empty views with the declared columns, so queries work
        on a new lake. Views read the files at query time: new data shows up without
        reconnecting.
        """
        con = duckdb.connect(database)
        present = set(self.tables())
        # `logs` first: the per-log views refer to it
        for table in sorted(present | set(schemas.TABLES), key=lambda t: (t != "logs", t)):
            if table in present:
                source = (
                    f"read_parquet('{_quote(self.glob(table))}', hive_partitioning = true, "
                    "union_by_name = true)"
                )
            else:
                con.register(f"_empty_{table}", schemas.empty(table))
                source = f"_empty_{table}"
            query = f"SELECT * FROM {source}"
            if table in schemas.PER_LOG_TABLES and "logs" in present:
                query += " WHERE log_id IN (SELECT log_id FROM logs)"
            elif table in schemas.PER_LOG_TABLES:
                query += " WHERE false"
            con.execute(f'CREATE OR REPLACE VIEW "{table}" AS {query}')
        return con

    def read(self, table: str, columns: list[str] | None = None) -> pa.Table:
        """Read a whole table (published rows only) as Arrow."""
        select = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        return self.connect().sql(f'SELECT {select} FROM "{table}"').to_arrow_table()


def resolve(lake: str | os.PathLike | Lake | None = None) -> Lake:
    """The lake to use: the argument, else $FLYWHEEL_LAKE, else flywheel.toml, else ./lake."""
    if isinstance(lake, Lake):
        return lake
    if lake is not None:
        return Lake(lake)
    return Lake(load_config().lake)


def _quote(text: str) -> str:
    return text.replace("'", "''")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    # the rename is durable only once the directory entry is
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
