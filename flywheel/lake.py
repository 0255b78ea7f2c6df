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
import hashlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel import schemas
from flywheel.config import load_config
from flywheel.errors import LakeError
from flywheel.lease import Lease, alive

TEMP_SUFFIX = ".tmp"
OBJECT_SCHEMES = ("s3", "gs", "gcs", "az", "abfs", "memory")


class Lake:
    """A lake rooted at a local folder or at an object-store prefix (``s3://bucket/prefix``).

    On an object store there is no rename: each file is written under its final name with one
    PUT, which the store makes visible whole or not at all, so the commit protocol above (data
    first, the `logs` row last; whole-file rewrites under the same name) holds unchanged.
    Locks on S3 hold across machines (a lease object, see `lock`), and files outside the
    tables (`_index`, `_labeling`, reports) go through `put`/`get`, which work on both.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        text = str(root)
        scheme = text.split("://", 1)[0] if "://" in text else ""
        self.local = scheme in ("", "file")
        if self.local:
            self.root = Path(text.removeprefix("file://")).expanduser().absolute()
            self.uri = str(self.root)
            self.fs = None
        else:
            if scheme not in OBJECT_SCHEMES:
                raise LakeError(
                    f"unsupported lake location {text!r}: a folder or s3://bucket/prefix"
                )
            self.uri = text.rstrip("/")
            self.root = self.uri  # for messages; object lakes have no local path
            self.fs = _object_fs(scheme)
            self._key = self.uri.split("://", 1)[1]

    def __repr__(self) -> str:
        return f"Lake({self.uri!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lake) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    def __reduce__(self):
        return (Lake, (self.uri,))

    # -- layout -----------------------------------------------------------------------------
    def table_dir(self, table: str) -> Path:
        return self._local_root() / table

    def path(self, table: str, name: str) -> Path:
        """Where the file `name` of `table` lives once published (local lakes)."""
        return self.table_dir(table) / f"{name}.parquet"

    def _local_root(self) -> Path:
        if not self.local:
            raise LakeError(f"{self.uri} is an object store: no local path")
        return self.root

    def _rel(self, rel: str) -> str:
        """The object key of `rel` (a path inside the lake); object-store lakes only."""
        return f"{self._key}/{rel}"

    def relative(self, file: str | os.PathLike) -> str:
        """The path inside the lake of `file`, as `files` and `file_stats` name it."""
        if self.local:
            return Path(file).relative_to(self.root).as_posix()
        return str(file).removeprefix(f"{self._key}/")

    def location(self, rel: str = "") -> str:
        """`rel` inside the lake, as a user would write it (for messages)."""
        return f"{self.uri}/{rel}" if rel else self.uri

    def files(self, table: str) -> list[Path]:
        """Published Parquet files of a table (temporary files are never listed).

        On an object store these are `PurePosixPath` keys (name and stem work).
        """
        if self.local:
            folder = self.table_dir(table)
            if not folder.is_dir():
                return []
            return sorted(folder.rglob("*.parquet"))
        return [PurePosixPath(k) for k, _ in self._object_files(f"{table}/")]

    def file_stats(self, table: str) -> list[tuple[str, object, int]]:
        """(file, modification stamp, size) of each published file: what changes on a write."""
        out = []
        if self.local:
            for path in self.files(table):
                try:
                    stat = path.stat()
                except FileNotFoundError:  # replaced or removed meanwhile
                    continue
                out.append((str(path), stat.st_mtime_ns, stat.st_size))
            return out
        return [
            (k, info.get("ETag") or info.get("LastModified"), int(info.get("size", 0)))
            for k, info in self._object_files(f"{table}/")
        ]

    def _object_files(self, prefix: str, suffix: str = ".parquet") -> list[tuple[str, dict]]:
        base = f"{self._key}/{prefix}"
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return []
        return sorted(
            (k, v)
            for k, v in found.items()
            if k.endswith(suffix) and not PurePosixPath(k).name.startswith(".")
        )

    def tables(self) -> list[str]:
        """Tables that hold at least one published file."""
        if self.local:
            if not self.root.is_dir():
                return []
            found = []
            for child in sorted(self.root.iterdir()):
                if (
                    child.is_dir()
                    and not child.name.startswith(("_", "."))
                    and self.files(child.name)
                ):
                    found.append(child.name)
            return found
        tables = {self.relative(k).split("/", 1)[0] for k, _ in self._object_files("")}
        return sorted(t for t in tables if not t.startswith(("_", ".")))

    def exists(self, table: str, name: str) -> bool:
        if self.local:
            return self.path(table, name).exists()
        return self.fs.exists(self._rel(f"{table}/{name}.parquet"))

    def ensure(self) -> None:
        """Create the lake's folder (nothing to do on an object store)."""
        if self.local:
            self.root.mkdir(parents=True, exist_ok=True)

    # -- writing ----------------------------------------------------------------------------
    def write(self, table: str, data: pa.Table, name: str | None = None) -> str | Path:
        """Atomically write `data` as one Parquet file of `table` and return where it went.

        `name` makes the write idempotent (the same name replaces the same file); without it a
        unique name is chosen, which is how append-only tables such as `events` grow.
        """
        if table in schemas.SCHEMAS:
            data = schemas.conform(table, data)
        name = name or f"{time.time_ns()}-{uuid.uuid4().hex[:12]}"
        return self.put(
            f"{table}/{name}.parquet", lambda path: pq.write_table(data, path, compression="zstd")
        )

    def put(self, rel: str, write: Callable[[Path], object]) -> str | Path:
        """Publish the file `rel` (a path inside the lake) that `write(path)` writes, whole.

        Local: `write` fills a hidden temporary file, which is fsynced and renamed. Object
        store: `write` fills a local temporary file, uploaded under its final key in one PUT.
        """
        if not self.local:
            with tempfile.TemporaryDirectory(prefix="flywheel-put-") as folder:
                temp = Path(folder) / PurePosixPath(rel).name
                write(temp)
                try:
                    self.fs.put_file(str(temp), self._rel(rel))
                except OSError as exc:
                    raise LakeError(
                        f"could not write {self.location(rel)}: {exc}; nothing was published, "
                        "rerun once the store answers"
                    ) from exc
            return self.location(rel)
        final = self.root / rel
        folder = final.parent
        folder.mkdir(parents=True, exist_ok=True)
        temp = folder / f".{final.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}"
        try:
            write(temp)
            with open(temp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(temp, final)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise LakeError(
                f"could not write {rel} in {self.root}: {exc.strerror or exc}; "
                "nothing was published, free space or fix permissions and rerun"
            ) from exc
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(folder)
        return final

    def get(self, rel: str) -> Path | None:
        """A local path to read the lake's file `rel` from (None if it does not exist).

        On an object store the file is downloaded to a per-machine cache, again only when
        its ETag changed.
        """
        if self.local:
            path = self.root / rel
            return path if path.exists() else None
        key = self._rel(rel)
        try:
            info = self.fs.info(key)
        except FileNotFoundError:
            return None
        tag = str(info.get("ETag", info.get("size", ""))).strip('"')
        cached = cache_dir(self.uri) / "files" / rel
        stamp = cached.with_name(cached.name + ".etag")
        if not (cached.exists() and stamp.exists() and stamp.read_text() == tag):
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_name(f".{cached.name}.{os.getpid()}{TEMP_SUFFIX}")
            self.fs.get_file(key, str(partial))
            os.replace(partial, cached)
            stamp.write_text(tag)
        return cached

    def open(self, rel: str) -> BinaryIO:
        """The lake's file `rel` opened for reading, without downloading it whole (an object
        store reads the ranges asked for: a Parquet footer costs one or two requests)."""
        if self.local:
            return (self.root / rel).open("rb")
        return self.fs.open(self._rel(rel), "rb")

    def read_text(self, rel: str) -> str | None:
        path = self.get(rel)
        return None if path is None else path.read_text()

    def write_text(self, rel: str, text: str) -> str | Path:
        return self.put(rel, lambda path: path.write_text(text))

    def listdir(self, rel: str) -> list[str]:
        """Names of the files directly in folder `rel` of the lake (hidden ones excluded)."""
        if self.local:
            folder = self.root / rel
            if not folder.is_dir():
                return []
            return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        try:
            keys = self.fs.ls(self._rel(rel), detail=False)
        except FileNotFoundError:
            return []
        names = (PurePosixPath(k).name for k in keys)
        return sorted(n for n in names if not n.startswith("."))

    def delete(self, rel: str) -> bool:
        """Remove the lake's file `rel`; True if it existed."""
        if self.local:
            path = self.root / rel
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            _fsync_dir(path.parent)
            return True
        key = self._rel(rel)
        if not self.fs.exists(key):  # S3 deletes a missing key without an error
            return False
        self.fs.rm_file(key)
        return True

    def remove(self, table: str, name: str) -> bool:
        """Remove one published file; True if it existed."""
        return self.delete(f"{table}/{name}.parquet")

    def read_file(self, table: str, name: str) -> pa.Table | None:
        """One published file of `table` (None if there is none of that name)."""
        path = self.get(f"{table}/{name}.parquet")
        return None if path is None else pq.read_table(path)

    def clean_temporary(self) -> int:
        """Delete temporary files left by writers that died (their process is gone)."""
        removed = 0
        if not self.local or not self.root.is_dir():
            return 0  # an object store has no temporary files: a PUT is whole or absent
        for temp in self.root.rglob(f".*{TEMP_SUFFIX}"):
            pid = temp.name.rsplit(".", 2)[-2].split("-")[0]
            if pid.isdigit() and alive(int(pid)):
                continue
            temp.unlink(missing_ok=True)
            removed += 1
        return removed

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold an exclusive lock named `name` across processes on this machine and, on an
        S3 lake, across machines too.

        The file lock orders this machine's processes; on S3 the holder then also takes the
        lease `<lake>/_locks/NAME.lock` (flywheel.lease: conditional PUTs, renewed while held,
        taken over when its holder died). On other object stores the lock is per machine:
        run labeling from one machine at a time there.
        """
        folder = (self.root if self.local else cache_dir(self.uri)) / "_locks"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{name}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                if self.local or not hasattr(self.fs, "_call_s3"):
                    yield
                else:
                    with Lease(self.fs, self._rel(f"_locks/{name}.lock")):
                        yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- reading ----------------------------------------------------------------------------
    def glob(self, table: str) -> str:
        if not self.local:
            return f"{self.uri}/{table}/**/*.parquet"
        return str(self.table_dir(table) / "**" / "*.parquet")

    def connect(self, database: str = ":memory:") -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with one view per table of CONTRACT §2 (and any other table).

        Tables with no file yet are empty views with the declared columns, so queries work
        on a new lake. Views read the files at query time: new data shows up without
        reconnecting.
        """
        con = duckdb.connect(database)
        if not self.local:  # DuckDB reads the store through fsspec, no extension download
            con.execute("SET autoload_known_extensions = false")
            con.register_filesystem(self.fs)
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


def _object_fs(scheme: str):
    """The fsspec filesystem for `scheme`, configured from the environment (AWS_ENDPOINT_URL,
    AWS_ACCESS_KEY_ID, … for S3): credentials never pass through Flywheel's own settings."""
    try:
        import fsspec

        # no listings cache: other processes publish files, and a stale listing would hide them
        return fsspec.filesystem(scheme, use_listings_cache=False)
    except ImportError as exc:
        raise LakeError(
            f"a {scheme}:// lake needs its fsspec driver: pip install 'flywheel[s3]' ({exc})"
        ) from exc


def cache_dir(uri: str) -> Path:
    """This machine's folder for an object-store lake: downloads, locks, local-only state."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return base / "flywheel" / "lakes" / digest


def _quote(text: str) -> str:
    return text.replace("'", "''")


def _fsync_dir(folder: Path) -> None:
    # the rename is durable only once the directory entry is
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
