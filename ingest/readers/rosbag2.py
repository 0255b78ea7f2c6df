"""ROS 2 bags: sqlite3 ``.db3`` files and rosbag2 folders (metadata.yaml + storage files).

A ``.db3`` is opened immutable (``mode=ro&immutable=1``): sqlite then writes no ``-wal``, ``-shm``
or journal beside it, takes no lock and works on read-only mounts. Its rows are read by rowid
range; a range that fails (a damaged page) is split until only the unreadable rows are left, so
a bad page costs its rows, not the file. What the file should hold is ``count(*)`` (answered from
the timestamp index when the table itself is damaged) or the bag metadata it stores.

A folder is read storage file by storage file (every file `metadata.yaml` lists, MCAP or sqlite3,
compressed per file or per message, and any other storage file beside them), and its
`metadata.yaml` says how many messages the whole bag holds.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePath
from urllib.parse import quote

from flywheel.errors import InputError
from ingest.readers import mcap
from ingest.readers._collect import Scan, _Collector
from ingest.readers._io import decompress, kind_of, mapped

SQLITE_MAGIC = b"SQLite format 3\x00"
METADATA = "metadata.yaml"
STORAGE_SUFFIXES = (".db3", ".mcap", ".db3.zstd", ".mcap.zstd")
MAX_FAILED_QUERIES = 20_000  # bisecting a shredded table stops here (about a second of queries)
FILE_BASE = 1 << 40  # connection keys of the n-th storage file of a folder start at n << 40


# --- .db3 -------------------------------------------------------------------------------------


def read_db3(path: Path, collector: _Collector, base: int = 0) -> Scan:
    """Feed every readable row of the rosbag2 sqlite3 file at `path` to `collector`."""
    with _connect(path) as con:
        return _Db3(path, con, collector, base).read()


class _connect:
    """An immutable, read-only connection; a copy in a temporary folder when a -wal is beside.

    Rows still in a write-ahead log are part of the bag, but an immutable connection ignores
    the log and a read-only one would have to create -shm beside the file: the copy has both.
    """

    def __init__(self, path: Path) -> None:
        self.path, self.tmp, self.con = path, None, None

    def __enter__(self) -> sqlite3.Connection:
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            if wal.is_file() and wal.stat().st_size:
                self.tmp = tempfile.TemporaryDirectory(prefix="flywheel-db3-")
                copy = Path(self.tmp.name) / self.path.name
                shutil.copyfile(self.path, copy)
                shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
                self.con = sqlite3.connect(copy)
            else:
                uri = f"file:{quote(str(self.path.absolute()))}?mode=ro&immutable=1"
                self.con = sqlite3.connect(uri, uri=True)
            # lets a file cut short be read up to the cut (sqlite refuses a file smaller than
            # its header says otherwise); the connection cannot write anyway
            self.con.execute("PRAGMA writable_schema = ON")
        except (OSError, sqlite3.Error) as exc:
            self.__exit__()
            raise InputError(
                f"{self.path}: cannot open the sqlite file ({exc})", path=str(self.path)
            ) from exc
        return self.con

    def __exit__(self, *exc) -> None:
        if self.con is not None:
            self.con.close()
        if self.tmp is not None:
            self.tmp.cleanup()


class _Db3:
    def __init__(self, path: Path, con: sqlite3.Connection, collector: _Collector, base: int):
        self.path, self.con, self.c, self.base = path, con, collector, base
        self.scan = Scan()
        self.topics: set[int] = set()
        self.unattributed = 0
        self.before = collector.total  # a folder reads several files into one collector

    def read(self) -> Scan:
        con = self.con
        try:
            tables = {
                r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        except sqlite3.Error as exc:
            raise InputError(
                f"{self.path}: the ROS 2 .db3 file is damaged where its table list is ({exc}); "
                "recover it with `sqlite3 file.db3 .recover` into a new file",
                path=str(self.path),
            ) from exc
        if not {"topics", "messages"} <= tables:
            raise InputError(
                f"{self.path}: an sqlite database but not a ROS 2 bag (no topics/messages tables); "
                "pass a rosbag2 .db3 file",
                path=str(self.path),
            )
        self._check_size()
        self._topics("message_definitions" in tables)
        claimed, source = self._claimed("metadata" in tables)
        self._messages()
        if self.unattributed:
            self.scan.problem(f"{self.unattributed:,} rows name a topic id the topics table lacks")
        found = self.c.total - self.before + self.unattributed
        if claimed is not None:
            self.scan.expected, self.scan.source = max(claimed, found), source
        elif not self.scan.problems:
            self.scan.expected = found
        return self.scan

    def _check_size(self) -> None:
        """The file's size against the page count its header claims (when the claim is valid)."""
        try:
            with mapped(self.path) as data:
                header = bytes(data[:100])
                size = len(data)
        except InputError:
            return
        if len(header) < 100:
            self.scan.problem(f"the file is cut short inside its header ({size:,} bytes)")
            return
        page = int.from_bytes(header[16:18], "big")
        page = 65536 if page == 1 else page
        pages = int.from_bytes(header[28:32], "big")
        # the page count is valid only when the change counter matches version-valid-for
        if not pages or header[24:28] != header[92:96]:
            return
        if size < pages * page:
            self.scan.problem(
                f"the file is cut short: it has {size:,} bytes, its header says "
                f"{pages * page:,}; rows on the missing pages are lost"
            )
        elif size > pages * page:
            self.scan.problem(
                f"{size - pages * page:,} bytes after the end of the database (appended?)"
            )

    def _topics(self, with_definitions: bool) -> None:
        definitions = {}
        if with_definitions:
            query = (
                "SELECT topic_type, encoding, encoded_message_definition FROM message_definitions"
            )
            try:
                for msgtype, encoding, text in self.con.execute(query):
                    definitions[msgtype] = (text, encoding)
            except sqlite3.Error as exc:
                self.c.warnings.append(f"the message_definitions table cannot be read ({exc})")
        try:
            rows = self.con.execute(
                "SELECT id, name, type, serialization_format FROM topics"
            ).fetchall()
        except sqlite3.Error as exc:
            raise InputError(
                f"{self.path}: the topics table of the .db3 file is damaged ({exc}); without "
                "it no message can be attributed. Recover it with `sqlite3 file.db3 .recover`",
                path=str(self.path),
            ) from exc
        for tid, name, msgtype, fmt in rows:
            if not isinstance(tid, int) or not isinstance(name, str):
                self.scan.problem("a row of the topics table is damaged (no id or name)")
                continue
            msgtype = msgtype if isinstance(msgtype, str) else ""
            fmt = fmt if isinstance(fmt, str) else ""
            text, encoding = definitions.get(msgtype, (None, None))
            text = text if isinstance(text, str) else None
            self.c.connection(self.base + tid, name, msgtype, fmt, text, encoding)
            self.topics.add(tid)

    def _claimed(self, with_metadata: bool) -> tuple[int | None, str]:
        """What the file says it holds: count(*), else the bag metadata stored in it."""
        try:
            return self.con.execute("SELECT count(*) FROM messages").fetchone()[0], "count(*)"
        except sqlite3.Error:
            pass
        if with_metadata:
            try:
                row = self.con.execute(
                    "SELECT metadata FROM metadata ORDER BY id DESC LIMIT 1"
                ).fetchone()
            except sqlite3.Error:
                row = None
            count = _file_count(_yaml(row[0]) if row else None, self.path.name)
            if count:
                return count, "the bag metadata stored in the file"
        return None, ""

    def _messages(self) -> None:
        con, conns, message, base = self.con, self.c.connections, self.c.message, self.base
        lo, hi = _rowid_bounds(con)
        unreadable: list[tuple[int, int]] = []
        for row in _rows(con, lo, hi, unreadable):
            _, tid, t_ns, data = row
            key = base + tid if isinstance(tid, int) else None
            if key in conns and isinstance(t_ns, int) and isinstance(data, bytes):
                message(key, t_ns, data)
            else:
                self.unattributed += 1
        if unreadable:
            ranges = ", ".join(
                f"{a:,} on" if b >= 2**62 else f"{a:,}" if b == a + 1 else f"{a:,}-{b - 1:,}"
                for a, b in unreadable[:5]
            )
            more = f" and {len(unreadable) - 5:,} more" if len(unreadable) > 5 else ""
            self.scan.problem(f"rows with ids {ranges}{more} are on damaged pages")


def _rowid_bounds(con: sqlite3.Connection) -> tuple[int, int]:
    """The range of rowids to read: from the table, else from an index of it, else everything.

    min/max walk the table's edges; when a page there is damaged, an index on the table
    (rosbag2 has one on timestamp) still lists every rowid.
    """
    queries = ["SELECT min(rowid), max(rowid) FROM messages"]
    try:
        for (name,) in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages'"
        ):
            quoted = '"' + str(name).replace('"', '""') + '"'
            queries.append(f"SELECT min(rowid), max(rowid) FROM messages INDEXED BY {quoted}")
    except sqlite3.Error:
        pass
    for query in queries:
        try:
            lo, hi = con.execute(query).fetchone()
        except sqlite3.Error:
            continue
        return (lo, hi + 1) if lo is not None else (0, 0)
    return -(2**63), 2**63 - 1


def _rows(con: sqlite3.Connection, lo: int, hi: int, unreadable: list) -> Iterator[tuple]:
    """The rows with rowid in [lo, hi), in rowid order, skipping the ones on damaged pages.

    One query on the common path. A range whose query fails is split in two, down to single
    rowids, which are looked up by equality: a range scan steps onto the next (damaged) page to
    see where it ends, and sqlite3 drops the row before a failing step. The rowids that still
    fail are appended to `unreadable` as ranges.
    """
    scan = (
        "SELECT rowid, topic_id, timestamp, data FROM messages "
        "WHERE rowid >= ? AND rowid < ? ORDER BY rowid"
    )
    one = "SELECT rowid, topic_id, timestamp, data FROM messages WHERE rowid = ?"
    stack, failures = [(lo, hi)], 0
    while stack:
        a, b = stack.pop()
        single, last = b - a == 1, a - 1
        try:
            rows = con.execute(one, (a,)) if single else con.execute(scan, (a, b))
            for row in rows:
                last = row[0]
                yield row
        except sqlite3.DatabaseError:
            failures += 1
            a = last + 1
            if a >= b:
                continue
            if single or failures > MAX_FAILED_QUERIES:  # this row (or this range) is lost
                if unreadable and unreadable[-1][1] == a:
                    unreadable[-1] = (unreadable[-1][0], b)
                else:
                    unreadable.append((a, b))
                continue
            mid = a + (b - a) // 2 if b - a > 1 else b
            stack += [(mid, b), (a, mid)] if mid < b else [(a, b)]  # lower half first


def _yaml(text: str | None) -> dict | None:
    if not text:
        return None
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        loaded = YAML(typ="safe").load(text)
    except YAMLError:
        return None
    if isinstance(loaded, dict) and isinstance(loaded.get("rosbag2_bagfile_information"), dict):
        loaded = loaded["rosbag2_bagfile_information"]
    return loaded if isinstance(loaded, dict) else None


def _file_count(meta: dict | None, name: str) -> int | None:
    """The message count bag metadata gives the storage file `name` (None when it says none)."""
    if not meta:
        return None
    for entry in meta.get("files") or ():
        if isinstance(entry, dict) and PurePath(str(entry.get("path", ""))).name == name:
            count = entry.get("message_count")
            return count if isinstance(count, int) and count >= 0 else None
    paths = meta.get("relative_file_paths") or ()
    count = meta.get("message_count")
    if len(paths) == 1 and PurePath(str(paths[0])).name == name and isinstance(count, int):
        return count
    return None


# --- folders ----------------------------------------------------------------------------------


def read_folder(path: Path, collector: _Collector) -> Scan:
    """Every storage file of the rosbag2 folder `path`, checked against its metadata.yaml."""
    scan = Scan()
    meta = _yaml(_read_text(path / METADATA, scan))
    if meta is None:
        scan.problem(
            "metadata.yaml cannot be read as rosbag2 metadata; the storage files were read"
        )
        meta = {}
    listed = [PurePath(str(p)).name for p in meta.get("relative_file_paths") or ()]
    try:
        names = sorted(p.name for p in path.iterdir())
    except OSError as exc:
        raise InputError(
            f"{path}: cannot list the folder ({exc.strerror})", path=str(path)
        ) from exc
    # beside the listed files, any other regular storage file (a split the metadata missed)
    others = [
        n for n in names if n.endswith(STORAGE_SUFFIXES) and n not in listed and _regular(path / n)
    ]
    if others:
        collector.warnings.append(
            f"{', '.join(others)}: storage files that metadata.yaml does not list; read as well"
        )
    per_message = str(meta.get("compression_mode", "")).lower() == "message"
    storage: int | None = 0
    for number, name in enumerate(listed + others, start=1):
        file_scan = _read_storage(path / name, collector, number * FILE_BASE, per_message)
        if file_scan is None:
            count = _file_count(meta, name)
            scan.problem(f"{name}, listed in metadata.yaml, is missing")
            storage = None if storage is None or count is None else storage + count
            continue
        scan.problems += [f"{name}: {p}" for p in file_scan.problems]
        if storage is not None and file_scan.expected is not None:
            storage += file_scan.expected
        else:
            storage = None
    _check_totals(scan, meta, storage, collector)
    return scan


def _regular(path: Path) -> bool:
    try:
        return kind_of(path.stat().st_mode) is None
    except OSError:
        return False


def _read_text(path: Path, scan: Scan) -> str | None:
    try:
        with mapped(path) as data:
            return bytes(data).decode("utf-8")
    except (InputError, UnicodeDecodeError) as exc:
        scan.problem(f"metadata.yaml cannot be read ({exc})")
        return None


def _read_storage(path: Path, collector, base: int, per_message: bool) -> Scan | None:
    """One storage file of a folder; None when it does not exist."""
    try:
        what = kind_of(path.stat().st_mode)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return Scan(problems=[f"cannot be read ({exc.strerror})"])
    if what is not None:
        return Scan(problems=[f"is {what}, not a storage file"])
    target = _Payloads(collector) if per_message else collector
    try:
        if path.name.endswith(".zstd"):
            return _read_compressed(path, target, base)
        return _read_plain(path, target, base)
    except InputError as exc:
        return Scan(problems=[exc.message])
    finally:
        if per_message and target.failed:
            collector.warnings.append(
                f"{path.name}: {target.failed:,} message payloads do not decompress (zstd)"
            )


def _read_plain(path: Path, collector, base: int) -> Scan:
    with mapped(path) as data:
        start = bytes(data[:16])
        if start.startswith(mcap.MAGIC):
            return mcap.read_mcap(data, collector, base)
    if start.startswith(SQLITE_MAGIC):
        return read_db3(path, collector, base)
    raise InputError(f"not an MCAP or sqlite3 storage file (it starts {start[:8]!r})")


def _read_compressed(path: Path, collector, base: int) -> Scan:
    """A file compressed whole (compression_mode: file): decompressed into a temporary folder."""
    with mapped(path) as data:
        raw, why = decompress("zstd", bytes(data), None)
    with tempfile.TemporaryDirectory(prefix="flywheel-rosbag2-") as tmp:
        plain = Path(tmp) / path.name.removesuffix(".zstd")
        plain.write_bytes(raw)
        del raw
        scan = _read_plain(plain, collector, base)
    if why:
        scan.problem(f"the zstd compression of the file is damaged ({why})")
    return scan


class _Payloads:
    """A collector in front of another that decompresses each payload (compression_mode: message).

    A payload that does not decompress still counts as found (so the loss is reported), but
    does not land.
    """

    def __init__(self, inner: _Collector) -> None:
        import zstandard

        self.inner = inner
        self.connections = inner.connections
        self.failed = 0
        self._decompress = zstandard.ZstdDecompressor().decompress

    @property
    def total(self) -> int:
        return self.inner.total + self.failed

    def connection(self, *args) -> None:
        self.inner.connection(*args)

    def message(self, key, log_time_ns: int, data: bytes) -> None:
        try:
            data = self._decompress(data, max_output_size=1 << 30)
        except Exception:  # zstandard.ZstdError and friends: one damaged payload
            self.failed += 1
            return
        self.inner.message(key, log_time_ns, data)

    @property
    def warnings(self) -> list[str]:
        return self.inner.warnings


def _check_totals(scan: Scan, meta: dict, storage: int | None, collector: _Collector) -> None:
    """The folder's expected count: metadata.yaml's, checked against the storage files'."""
    listed = meta.get("message_count")
    listed = listed if isinstance(listed, int) and listed >= 0 else None
    if listed is None:
        scan.expected = storage
        scan.source = "the storage files' own indexes"
        return
    scan.expected = listed if storage is None else max(listed, storage)
    scan.source = "metadata.yaml"
    if storage is not None and listed > storage and not scan.problems:
        short = []
        for entry in meta.get("topics_with_message_count") or ():
            name = str(((entry or {}).get("topic_metadata") or {}).get("name", ""))
            want = (entry or {}).get("message_count")
            have = collector.counts.get(name, 0)
            if isinstance(want, int) and want > have:
                short.append(f"{name} {have:,} of {want:,}")
        detail = f" ({'; '.join(short)})" if short else ""
        scan.problem(
            f"metadata.yaml lists {listed:,} messages, the storage files hold {storage:,}{detail}"
        )
