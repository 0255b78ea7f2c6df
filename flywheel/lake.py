"""The lake: a folder of Parquet tables that every stage reads and writes (docs/contract.md §2).

Each table is a folder of Parquet files. A file appears under its final name only when it is
complete: it is written to a hidden temporary name, flushed to disk, then renamed, so a crash
never leaves a half-written file where readers look (readers list ``*.parquet`` only).

Rows of one log (`ego`, `gnss`, `imu`, `objects`, `scenes`) are written first and the log's row
in `logs` last: that row publishes them. The DuckDB views hide per-log rows whose log is not
published, so a crash between the two leaves the lake consistent and a rerun (which rewrites
the same file names) completes the work exactly once.

Replacing a published log (``ingest --force``) never rewrites a file that its published row
still needs: while `logs/<name>.parquet` is published, the per-log files the same `Lake` writes
(or removes) for `<name>` form a new generation, `<table>/<name>@<generation>.parquet`, that no
reader sees; the next write of `logs/<name>` publishes that generation in one step (its file is
`logs/<name>@<generation>.parquet`); the files of the one before stay readable for RETAIN_NS
(ten minutes) for readers that listed them, then the next write or `clean_temporary` deletes
them. A reader lists
the files once per connection (a `Snapshot`: per name, only the published generation), so it
sees the old version of a log or the new one, never a mix; a query that finds a listed file
deleted under it runs again on the files published now (`LakeConnection`), never an error.

Only the tables the core declares (`flywheel.schemas.KNOWN_TABLES`) are tables: a folder of any
other name is ignored (`unknown_folders` lists them), and no folder or file name ever becomes
SQL or a glob unquoted (`flywheel.sql`).

>>> con = Lake(lake).connect()
>>> con.execute("SELECT count(*) FROM logs").fetchone()[0]
2
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel import schemas
from flywheel.config import load_config
from flywheel.errors import LakeError
from flywheel.lease import Lease, alive
from flywheel.sql import glob_escape, identifier, literal
from flywheel.sql import path as sql_path

TEMP_SUFFIX = ".tmp"
SUFFIX = ".parquet"
OBJECT_SCHEMES = ("s3", "gs", "gcs", "az", "abfs", "memory")
# <name>@<generation>.parquet: a generation of a replaced log (see the module docstring)
GENERATION = "@"
GENERATIONAL = ("logs", *schemas.PER_LOG_TABLES)
ORPHAN_AGE_NS = 3600 * 10**9  # an unpublished generation this old has no writer left
# A superseded generation stays readable this long after its successor began, so that readers
# that listed it (a snapshot, a view) do not find its files gone (Delta's "retention", short).
RETAIN_NS = 600 * 10**9
T = TypeVar("T")
LISTING_SLACK_NS = 10**9


def _folder_stamp(folder: str) -> tuple:
    """What changes when an entry of `folder` is added, removed or renamed; () when absent."""
    try:
        stat = os.stat(folder)
    except (FileNotFoundError, NotADirectoryError):
        return ()
    return (stat.st_ino, stat.st_mtime_ns, stat.st_dev)


def _walk(folder: str, rel: str, folders: list, found: list) -> None:
    """The Parquet files under `folder` (subfolders too, hidden ones skipped) into `found`,
    each folder's stamp into `folders`, taken before it is read."""
    stamp = _folder_stamp(folder)
    folders.append((folder, stamp))
    if not stamp:
        return
    try:
        entries = list(os.scandir(folder))  # in any order: _list sorts what is found
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if not entry.is_symlink():  # as os.walk: a linked folder is not descended
                _walk(entry.path, f"{rel}/{entry.name}", folders, found)
        elif entry.name.endswith(SUFFIX):
            try:
                stat = entry.stat()
            except FileNotFoundError:  # replaced or removed meanwhile
                continue
            found.append(LakeFile(f"{rel}/{entry.name}", stat.st_mtime_ns, stat.st_size))


@dataclass(frozen=True)
class LakeFile:
    """One published file: its path inside the lake, and what changes when it is rewritten."""

    rel: str  # "scenes/ab12.parquet"
    stamp: object  # mtime in ns (local) or ETag (object store)
    size: int

    @property
    def unit(self) -> tuple[str, str]:
        """(name, generation) of the file: ``scenes/ab12@7.parquet`` -> ("ab12", "7")."""
        name = self.rel.split("/", 1)[1][: -len(SUFFIX)]
        base, _, generation = name.partition(GENERATION)
        return base, generation


@dataclass(frozen=True)
class Snapshot:
    """The published files of some tables, listed once: what one connection reads.

    Two snapshots are equal when the same files, unchanged, are published.
    """

    files: Mapping[str, tuple[LakeFile, ...]] = field(default_factory=dict)

    @property
    def tables(self) -> list[str]:
        """The tables the snapshot covers (listed, with or without files)."""
        return list(self.files)


@dataclass
class _Replacement:
    """A published log being replaced by this `Lake`: the generation its files go to."""

    generation: str
    previous: str  # the published generation, whose files go once the new one is published


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
            self._scheme = scheme
            self._key = self.uri.split("://", 1)[1]
        self._replacing: dict[str, _Replacement] = {}
        # table -> ((folder, stamp) of each folder walked, the files found): see _list
        self._listings: dict[str, tuple[tuple[tuple[str, tuple], ...], tuple[LakeFile, ...]]] = {}

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
        """Published Parquet files of a table (temporary files and unpublished generations of
        a replaced log are never listed).

        On an object store these are `PurePosixPath` keys (name and stem work).
        """
        return [self._file_path(f) for f in self.snapshot([table]).files[table]]

    def file_stats(self, table: str) -> list[tuple[str, object, int]]:
        """(file, modification stamp, size) of each published file: what changes on a write."""
        return [
            (str(self._file_path(f)), f.stamp, f.size) for f in self.snapshot([table]).files[table]
        ]

    def _file_path(self, file: LakeFile) -> Path | PurePosixPath:
        return self.root / file.rel if self.local else PurePosixPath(self._rel(file.rel))

    def source(self, file: LakeFile) -> str:
        """Where DuckDB opens `file`: a local path or an object-store URL (not yet quoted)."""
        return (
            str(self.root / file.rel) if self.local else f"{self._scheme}://{self._rel(file.rel)}"
        )

    def snapshot(self, tables: Iterable[str] | None = None) -> Snapshot:
        """The published files of `tables` (default: every known table), listed once.

        A per-log table's files are those of the generation its log's row was published with
        (the only one, unless the log was replaced), so `logs` is listed with any of them.
        """
        wanted = list(schemas.KNOWN_TABLES if tables is None else dict.fromkeys(tables))
        unknown = [t for t in wanted if t not in schemas.KNOWN_TABLES]
        if unknown:
            raise LakeError(
                f"{', '.join(map(repr, unknown))} is not a table of the lake; tables: "
                + ", ".join(schemas.KNOWN_TABLES)
            )
        if "logs" not in wanted and set(wanted) & set(schemas.PER_LOG_TABLES):
            wanted.append("logs")  # it decides which of their files are published
        for table, (_, publisher) in schemas.PUBLISHED_BY.items():
            if table in wanted and publisher not in wanted:
                wanted.append(publisher)
        listed = self._list(wanted)
        logs = _newest_generations(listed.get("logs", []))
        published = {f.unit[0]: f.unit[1] for f in logs}
        files = {}
        for table in wanted:
            found = listed.get(table, [])
            if table == "logs":
                found = logs
            elif table in schemas.PER_LOG_TABLES:
                found = [f for f in found if published.get(f.unit[0], "") == f.unit[1]]
            files[table] = tuple(found)
        return Snapshot(files)

    def _list(self, tables: list[str]) -> dict[str, list[LakeFile]]:
        """Every Parquet file of each table, all generations, sorted (hidden files excluded).

        A local table's listing is reused while none of its folders changed (a stat per folder,
        not per file: a search in a notebook lists the lake on every call). Adding, removing
        or renaming a file into a folder changes the folder's stamp, and the lake writes every
        file that way; a folder changed less than LISTING_SLACK_NS before it was listed is
        listed again next time, as git does with "racily clean" entries.
        """
        out: dict[str, list[LakeFile]] = {t: [] for t in tables}
        if not self.local:
            # one listing of the whole lake: a request per table would cost more
            for key, info in self._object_files(""):
                rel = self.relative(key)
                if rel.split("/", 1)[0] in out:
                    stamp = info.get("ETag") or info.get("LastModified")
                    out[rel.split("/", 1)[0]].append(LakeFile(rel, stamp, int(info.get("size", 0))))
            return out
        for table in tables:
            cached = self._listings.get(table)
            if cached is not None and all(_folder_stamp(f) == stamp for f, stamp in cached[0]):
                out[table] = list(cached[1])
                continue
            started = time.time_ns()
            folders: list[tuple[str, tuple]] = []
            found: list[LakeFile] = []
            _walk(str(self.table_dir(table)), table, folders, found)
            found.sort(key=lambda f: f.rel)
            out[table] = found
            if all(not stamp or stamp[1] < started - LISTING_SLACK_NS for _, stamp in folders):
                self._listings[table] = (tuple(folders), tuple(found))
            else:  # changed just now: a change in the same clock tick would keep its stamp
                self._listings.pop(table, None)
        return out

    def _object_files(self, prefix: str, suffix: str = SUFFIX) -> list[tuple[str, dict]]:
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
        """Known tables (`flywheel.schemas.KNOWN_TABLES`) that hold at least one published file."""
        return sorted(t for t, found in self.snapshot().files.items() if found)

    def unknown_folders(self) -> list[str]:
        """Folders at the lake's top that are not tables (nor `_`/`.` private ones): they are
        never read; `flywheel status` lists them."""
        if self.local:
            if not self.root.is_dir():
                return []
            names = [c.name for c in self.root.iterdir() if c.is_dir()]
        else:
            rels = (self.relative(k) for k, _ in self._object_files("", ""))
            names = [r.split("/", 1)[0] for r in rels if "/" in r]
        return sorted(
            n for n in set(names) if n not in schemas.KNOWN_TABLES and not n.startswith(("_", "."))
        )

    def exists(self, table: str, name: str) -> bool:
        """Whether `table` holds a file named `name` (of any generation, for a per-log table)."""
        if table in GENERATIONAL:
            return bool(self._generations(table, name))
        if self.local:
            return self.path(table, name).exists()
        return self.fs.exists(self._rel(f"{table}/{name}{SUFFIX}"))

    def _generations(self, table: str, name: str) -> list[str]:
        """The generations of the file `name` of `table` that exist ("" for `name.parquet`)."""
        prefix = f"{name}{GENERATION}"
        found = []
        if self.local:
            try:
                with os.scandir(self.table_dir(table)) as entries:
                    names = [e.name for e in entries]
            except (FileNotFoundError, NotADirectoryError):
                return []
        else:
            pattern = glob_escape(self._rel(f"{table}/{name}")) + "*" + SUFFIX
            names = [PurePosixPath(k).name for k in self.fs.glob(pattern)]
        for entry in names:
            if entry == f"{name}{SUFFIX}":
                found.append("")
            elif entry.startswith(prefix) and entry.endswith(SUFFIX):
                found.append(entry[len(prefix) : -len(SUFFIX)])
        return sorted(found)

    def published_files(self, table: str, names: Iterable[str]) -> dict[str, str]:
        """{name: path in the lake} of the published file of each of `names` in a per-log
        `table` (names without one are left out): one listing of the folder and of `logs`,
        names only, whatever the lake's size, for readers of a few logs' files."""
        wanted = set(names)

        def units(folder: str) -> dict[str, list[str]]:
            found: dict[str, list[str]] = {}
            if self.local:
                try:
                    with os.scandir(self.table_dir(folder)) as entries:
                        listed = [e.name for e in entries]
                except (FileNotFoundError, NotADirectoryError):
                    return {}
            else:
                listed = [PurePosixPath(k).name for k in self.fs.glob(self._rel(folder) + "/*")]
            for entry in listed:
                if entry.endswith(SUFFIX) and not entry.startswith("."):
                    base, _, generation = entry[: -len(SUFFIX)].partition(GENERATION)
                    if base in wanted:
                        found.setdefault(base, []).append(generation)
            return found

        published = {name: max(g) for name, g in units("logs").items()}
        out = {}
        for name, generations in units(table).items():
            if name in published and published[name] in generations:
                out[name] = _generation_rel(table, name, published[name])
        return out

    def _published(self, name: str) -> str | None:
        """The generation `logs/<name>` is published with, or None when it is not published."""
        generations = self._generations("logs", name)
        return max(generations) if generations else None

    def ensure(self) -> None:
        """Create the lake's folder (nothing to do on an object store)."""
        if self.local:
            self.root.mkdir(parents=True, exist_ok=True)

    # -- writing ----------------------------------------------------------------------------
    def write(self, table: str, data: pa.Table, name: str | None = None) -> str | Path:
        """Atomically write `data` as one Parquet file of `table` and return where it went.

        `name` makes the write idempotent (the same name replaces the same file); without it a
        unique name is chosen, which is how append-only tables such as `events` grow. A
        per-log file of a published log goes to the log's next generation, which the next
        write of its `logs` file publishes (see the module docstring).
        """
        if table in schemas.SCHEMAS:
            data = schemas.conform(table, data)
        if name is None:
            rel = f"{table}/{time.time_ns()}-{uuid.uuid4().hex[:12]}{SUFFIX}"
        elif table == "logs":
            replacing = self._replacing.get(name)
            generation = replacing.generation if replacing else self._published(name) or ""
            rel = _generation_rel(table, name, generation)
        elif table in schemas.PER_LOG_TABLES:
            replacing = self._replacement(name)
            rel = _generation_rel(table, name, replacing.generation if replacing else "")
        else:
            rel = f"{table}/{name}{SUFFIX}"
        written = self.put(rel, lambda path: pq.write_table(data, path, compression="zstd"))
        if table == "logs" and name in self._replacing:
            self._publish_replacement(name)
        return written

    def _replacement(self, name: str) -> _Replacement | None:
        """The replacement of the published log `name` this Lake is writing, begun on first use
        (None when `logs/<name>` is not published: its files are written in place)."""
        if name not in self._replacing:
            published = self._published(name)
            if published is None:
                return None
            self._replacing[name] = _Replacement(_next_generation(published), published)
        return self._replacing[name]

    def _publish_replacement(self, name: str) -> None:
        """`logs/<name>` of the new generation is written: delete the generations superseded
        longer than RETAIN_NS ago. A reader that listed a superseded one moments ago can still
        open its files (DuckDB opens them when the view is made, and again per query); one
        slower than that runs its query again (see `LakeConnection`)."""
        self._replacing.pop(name)
        self._drop_expired(name)

    def _drop_expired(self, name: str) -> int:
        """Delete the files of the generations of `name` superseded more than RETAIN_NS ago."""
        published = self._generations("logs", name)
        expired = _expired(published, time.time_ns() - RETAIN_NS)
        removed = 0
        for table in GENERATIONAL:
            for generation in self._generations(table, name):
                if generation in expired or (
                    table != "logs" and generation < max(expired, default="")
                ):
                    removed += self.delete(_generation_rel(table, name, generation))
        return removed

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
        """Remove one published file; True if it existed.

        A per-log file of a published log stays until the log's next generation is published
        (it is left out of that generation); removing a `logs` file unpublishes the log, and
        also discards the replacement of it this Lake had begun (its files and the old ones).
        """
        if table in schemas.PER_LOG_TABLES:
            replacing = self._replacement(name)
            if replacing is not None:
                self.delete(_generation_rel(table, name, replacing.generation))
                return self.exists(table, name)
            return any(
                [
                    self.delete(_generation_rel(table, name, g))
                    for g in self._generations(table, name)
                ]
            )
        if table == "logs":
            replacing = self._replacing.pop(name, None)
            removed = [
                self.delete(_generation_rel(table, name, g)) for g in self._generations(table, name)
            ]
            if replacing is not None:
                for other in schemas.PER_LOG_TABLES:
                    for generation in (replacing.previous, replacing.generation):
                        self.delete(_generation_rel(other, name, generation))
            return any(removed)
        return self.delete(f"{table}/{name}{SUFFIX}")

    def read_file(
        self,
        table: str,
        name: str,
        columns: list[str] | None = None,
        filters: list[tuple[str, str, Any]] | None = None,
    ) -> pa.Table | None:
        """One published file of `table` (None if there is none of that name), optionally only
        `columns` and the rows matching `filters` (pyarrow's form, read row group by group)."""
        rel = f"{table}/{name}{SUFFIX}"
        if table in GENERATIONAL:
            generations = self._generations(table, name)
            if table != "logs" and generations:
                published = self._published(name)
                generations = [g for g in generations if g == (published or "")]
            if not generations:
                return None
            rel = _generation_rel(table, name, max(generations))
        path = self.get(rel)
        return None if path is None else pq.read_table(path, columns=columns, filters=filters)

    def clean_temporary(self) -> int:
        """Delete temporary files left by writers that died (their process is gone), and the
        files of generations no reader can see any more: superseded ones, and the unpublished
        ones of replacements whose writer died."""
        removed = 0
        if not self.local or not self.root.is_dir():
            return 0  # an object store has no temporary files: a PUT is whole or absent
        for temp in self.root.rglob(f".*{TEMP_SUFFIX}"):
            pid = temp.name.rsplit(".", 2)[-2].split("-")[0]
            if pid.isdigit() and alive(int(pid)):
                continue
            temp.unlink(missing_ok=True)
            removed += 1
        listed = self._list(list(GENERATIONAL))
        snapshot = self.snapshot(GENERATIONAL)
        visible = {f.rel for files in snapshot.files.values() for f in files}
        published = {f.unit[0]: f.unit[1] for f in snapshot.files["logs"]}
        recent = time.time_ns() - ORPHAN_AGE_NS
        logs_generations: dict[str, list[str]] = {}
        for file in listed["logs"]:
            logs_generations.setdefault(file.unit[0], []).append(file.unit[1])
        cutoff = time.time_ns() - RETAIN_NS
        for table in GENERATIONAL:
            for file in listed[table]:
                name, generation = file.unit
                if file.rel in visible:
                    continue
                if name in published and generation < published[name]:
                    # superseded: kept for readers that listed it, until RETAIN_NS have passed
                    expired = _expired(sorted(logs_generations.get(name, [])), cutoff)
                    if generation not in expired and generation >= max(expired, default=""):
                        continue
                if name in published and generation > published[name]:
                    # not yet published: a replacement under way, unless its writer is gone
                    writer = generation.rpartition("-")[2]
                    if (writer.isdigit() and alive(int(writer))) or file.stamp > recent:
                        continue
                removed += self.delete(file.rel)
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
        """The contract's glob of `table` (docs/contract.md §2), for other tools; the lake's own
        path is escaped, so it matches this lake's files only. Flywheel itself lists files
        instead."""
        root = glob_escape(self.uri if not self.local else str(self.root))
        return f"{root}/{table}/**/*{SUFFIX}"

    def connect(
        self, database: str = ":memory:", snapshot: Snapshot | None = None
    ) -> LakeConnection:
        """A DuckDB connection with one view per table of docs/contract.md §2 (and the stages' own
        known tables that hold files). Every method of a DuckDB connection works on it.

        The views read the files of one `Snapshot` (default: listed now), named one by one,
        never by a glob. A query that fails because one of them was replaced or removed
        meanwhile (``ingest --force`` of a log) runs again on views over the files published
        now, so a reader sees the old lake or the new one, never an error; and those views
        then show what was published since. Tables with no file yet are empty views with the
        declared columns, so queries work on a new lake.
        """
        con = duckdb.connect(database)
        try:
            if not self.local:  # DuckDB reads the store through fsspec, no extension download
                con.execute("SET autoload_known_extensions = false")
                con.register_filesystem(self.fs)
            connection = LakeConnection(self, con, snapshot or self.snapshot())
            try:
                self._create_views(con, connection.snapshot)
            except _VANISHED:  # a listed file went meanwhile: views over a fresh listing
                if not connection.refresh():
                    raise
        except BaseException:
            con.close()
            raise
        return connection

    def _create_views(self, con: duckdb.DuckDBPyConnection, snapshot: Snapshot) -> None:
        """(Re)create the views of `snapshot` on `con`: each reads exactly its listed files."""
        logs = bool(snapshot.files.get("logs"))
        publishers = {p for _, p in schemas.PUBLISHED_BY.values()}
        # `logs` and the other publishers first: the views they publish refer to them
        for table in sorted(snapshot.tables, key=lambda t: (t != "logs", t not in publishers, t)):
            files = snapshot.files[table]
            if files:
                nested = any(f.rel.count("/") > 1 for f in files)
                listed = ", ".join(sql_path(self.source(f)) for f in files)
                # hive columns only from folders inside the table: a lake under `runs/date=3/`
                # must not gain a `date` column
                source = (
                    f"read_parquet([{listed}], hive_partitioning = {str(nested).lower()}, "
                    "union_by_name = true)"
                )
            elif table in schemas.SCHEMAS:
                con.register(f"_empty_{table}", schemas.empty(table))
                source = identifier(f"_empty_{table}")
            else:
                con.execute(f"DROP VIEW IF EXISTS {identifier(table)}")
                continue  # a stage's own table with no file yet: no view
            if files and table in schemas.LATE_COLUMNS:
                # files written before a column was declared lack it: the view still has it
                con.register(f"_empty_{table}", schemas.empty(table))
                empty = identifier(f"_empty_{table}")
                source = f"(SELECT * FROM {empty} UNION ALL BY NAME SELECT * FROM {source})"
            defaults = schemas.READ_DEFAULTS.get(table, {})
            replace = ", ".join(
                f"coalesce({identifier(c)}, {literal(v)}) AS {identifier(c)}"
                for c, v in defaults.items()
            )
            query = f"SELECT * {f'REPLACE ({replace}) ' if replace else ''}FROM {source}"
            if table in schemas.PER_LOG_TABLES:
                query += " WHERE log_id IN (SELECT log_id FROM logs)" if logs else " WHERE false"
            elif table in schemas.PUBLISHED_BY:
                key, publisher = schemas.PUBLISHED_BY[table]
                query += (
                    f" WHERE {identifier(key)} IN (SELECT {identifier(key)} FROM "
                    f"{identifier(publisher)})"
                    if snapshot.files.get(publisher)
                    else " WHERE false"
                )
            con.execute(f"CREATE OR REPLACE VIEW {identifier(table)} AS {query}")
        for view, select in schemas.VIEWS.items():
            if set(schemas.VIEW_READS[view]) <= set(snapshot.tables):
                con.execute(f"CREATE OR REPLACE VIEW {identifier(view)} AS {select}")

    def read(self, table: str, columns: list[str] | None = None) -> pa.Table:
        """Read a whole table (published rows only) as Arrow."""
        select = ", ".join(identifier(c) for c in columns) if columns else "*"
        with self.connect(snapshot=self.snapshot([table])) as con:
            return con.sql(f"SELECT {select} FROM {identifier(table)}").to_arrow_table()


# A query that failed on a file replaced under it runs again this many times in all.
ATTEMPTS = 3
# how long a reader keeps listing again while files it listed keep vanishing under it
CHURN_S = 10.0
_VANISHED = (duckdb.IOException, duckdb.InvalidInputException)
# relation methods that run the query (the others build new relations)
_RUNS = frozenset(
    [
        "arrow",
        "df",
        "execute",
        "fetch_arrow_table",
        "fetch_df",
        "fetchall",
        "fetchdf",
        "fetchmany",
        "fetchnumpy",
        "fetchone",
        "pl",
        "show",
        "to_arrow_table",
        "to_df",
    ]
)


class LakeConnection:
    """A DuckDB connection to the lake's views, as `Lake.connect` returns it.

    Every attribute is the DuckDB connection's own, except that `execute` and `sql` (and the
    relations `sql` returns) run a query again on views over the files published now when it
    failed because a file it listed was replaced or removed meanwhile. `snapshot` is the
    files the views read; `duckdb` the plain connection.
    """

    def __init__(self, lake: Lake, con: duckdb.DuckDBPyConnection, snapshot: Snapshot) -> None:
        self.lake, self.duckdb, self.snapshot = lake, con, snapshot

    def __getattr__(self, name: str) -> Any:
        return getattr(self.duckdb, name)

    def __repr__(self) -> str:
        return f"<LakeConnection to {self.lake.uri}>"

    def __enter__(self) -> LakeConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.duckdb.close()

    def execute(self, query: object, parameters: object = None) -> LakeConnection:
        """DuckDB's `execute`; returns this connection (fetch from it)."""
        if parameters is None:
            self._retry(lambda: self.duckdb.execute(query))
        else:
            self._retry(lambda: self.duckdb.execute(query, parameters))
        return self

    def sql(self, query: str, **options: Any) -> Any:
        """DuckDB's `sql`: a relation (None for a statement that returns no rows)."""

        def build() -> Any:
            return self.duckdb.sql(query, **options)

        relation = self._retry(build)
        return None if relation is None else _Relation(self, relation, build)

    query = sql

    def refresh(self) -> bool:
        """Point the views at the files published now; False when nothing changed.

        A file listed now may be gone before its view is made (a purge deletes many in a
        row): the listing is then taken again, for as long as the lake keeps changing, up to
        CHURN_S seconds."""
        deadline = time.monotonic() + CHURN_S
        while True:
            fresh = self.lake.snapshot(self.snapshot.tables)
            if fresh == self.snapshot:
                return False
            try:
                self.lake._create_views(self.duckdb, fresh)
            except _VANISHED:
                if time.monotonic() > deadline:
                    raise
                continue
            self.snapshot = fresh
            return True

    def _retry(self, work: Callable[[], T]) -> T:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return work()
            except _VANISHED:
                if attempt == ATTEMPTS or not self.refresh():
                    raise
        raise AssertionError("unreachable")


class _Relation:
    """A DuckDB relation of a `LakeConnection`: running it is retried like its queries."""

    def __init__(self, con: LakeConnection, relation: Any, build: Callable[[], Any]) -> None:
        self._con, self._relation, self._build = con, relation, build

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._relation, name)
        if name not in _RUNS or not callable(attribute):
            return attribute

        def run(*args: Any, **kwargs: Any) -> Any:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    return getattr(self._relation, name)(*args, **kwargs)
                except _VANISHED:
                    if attempt == ATTEMPTS or not self._con.refresh():
                        raise
                    self._relation = self._build()

        return run

    def __repr__(self) -> str:
        return repr(self._relation)

    def __len__(self) -> int:
        return len(self._relation)


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


def _generation_rel(table: str, name: str, generation: str) -> str:
    """The file of generation `generation` ("" for the first) of `name` in `table`."""
    return (
        f"{table}/{name}{GENERATION}{generation}{SUFFIX}"
        if generation
        else f"{table}/{name}{SUFFIX}"
    )


def _next_generation(after: str) -> str:
    """A new generation, ordered after `after`: nanoseconds (fixed width) and the writer's pid."""
    stamp = time.time_ns()
    previous = after.partition("-")[0]
    if previous.isdigit():
        stamp = max(stamp, int(previous) + 1)
    return f"{stamp:019d}-{os.getpid()}"


def _newest_generations(files: Iterable[LakeFile]) -> list[LakeFile]:
    """Per name, the file of the newest generation (two exist only while one is published)."""
    newest: dict[str, LakeFile] = {}
    for file in files:
        name, generation = file.unit
        if name not in newest or generation > newest[name].unit[1]:
            newest[name] = file
    return sorted(newest.values(), key=lambda f: f.rel)


def _stamp(generation: str) -> int:
    """When a generation began (ns); the first generation ("") began at 0."""
    head = generation.partition("-")[0]
    return int(head) if head.isdigit() else 0


def _expired(generations: list[str], cutoff_ns: int) -> set[str]:
    """Of the sorted published `generations` of one log, those whose successor began before
    `cutoff_ns`: no reader listed them since, so their files may go."""
    return {old for old, new in itertools.pairwise(generations) if _stamp(new) < cutoff_ns}


def _fsync_dir(folder: Path) -> None:
    # the rename is durable only once the directory entry is
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
