"""Read a drive log of any supported container into decoded tables: one reader per format.

MCAP (ROS 2 CDR, ROS 1, JSON), ROS 1 ``.bag``, ROS 2 ``.db3`` and rosbag2 folders. Every
reader feeds the same `_Collector` (count every message, batch and decode the topics that map
to a kind); `ingest.extract` then builds the tables. Truncated MCAP files and ROS 1 bags are
salvaged record by record up to the cut.

>>> log = read_log("drives/drive_0000.mcap")            # doctest: +SKIP
>>> log.message_count, log.ego.num_rows                  # doctest: +SKIP
(12345, 1200)
"""

from __future__ import annotations

import bz2
import mmap
import sqlite3
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from flywheel.errors import InputError
from ingest.extract import (
    DEFAULT_KINDS,
    KINDS,
    TopicColumns,
    _Failures,
    build_tables,
    generic_decoder,
    normalize_msgtype,
    shape_of,
)

BATCH = 20_000  # messages decoded at once: bounds memory, keeps numpy work vectorised
MCAP_MAGIC = b"\x89MCAP0\r\n"
BAG_MAGIC = b"#ROSBAG V2.0\n"
SQLITE_MAGIC = b"SQLite format 3\x00"
EXPECTED = "an MCAP file, a ROS 1 .bag, a ROS 2 .db3 or a rosbag2 folder with metadata.yaml"
# The types ingest.decode has a fast path for (docs/ingest.md); others go straight to generic.
BULK_TYPES = {
    "nav_msgs/msg/Odometry",
    "geometry_msgs/msg/PoseStamped",
    "sensor_msgs/msg/NavSatFix",
    "sensor_msgs/msg/Imu",
    "vision_msgs/msg/Detection3DArray",
}


@dataclass
class TopicInfo:
    """One topic of a log: its type, encoding, message count and the kind it was read as."""

    topic: str
    msgtype: str
    encoding: str
    count: int
    kind: str | None


@dataclass
class DecodedLog:
    """Everything ingest needs from one log file (see docs/ingest.md for the columns)."""

    format: str
    message_count: int
    start_ns: int
    end_ns: int
    topics: list[TopicInfo]
    ego: pa.Table | None = None
    gnss: pa.Table | None = None
    imu: pa.Table | None = None
    objects: pa.Table | None = None
    camera: pa.Table | None = None
    warnings: list[str] = field(default_factory=list)
    truncated: str | None = None


def read_log(path: str | Path, topic_map: Mapping[str, str] | None = None) -> DecodedLog:
    """Read an MCAP, ROS 1 bag, ROS 2 .db3 or rosbag2 folder into tables.

    `topic_map` maps a topic name to a kind (one of KINDS) and overrides recognition by type.

    >>> read_log("run.bag", topic_map={"/gps/fix": "ignore"}).gnss is None   # doctest: +SKIP
    True
    """
    path = Path(path)
    for topic, kind in (topic_map or {}).items():
        if kind not in KINDS:
            raise InputError(
                f"topic map entry {topic!r}: unknown kind {kind!r}; use one of {', '.join(KINDS)}",
                path=str(path),
            )
    if path.name == "metadata.yaml":
        path = path.parent
    if path.is_dir():
        if not (path / "metadata.yaml").is_file():
            raise InputError(
                f"{path}: a folder without metadata.yaml is not a rosbag2 folder; "
                f"pass the log files inside it instead (expected {EXPECTED})",
                path=str(path),
            )
        return _finish(path, "rosbag2", topic_map, _read_rosbag2_folder)
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise InputError(f"{path}: cannot open the file ({exc.strerror})", path=str(path)) from exc
    if not head:
        raise InputError(
            f"{path}: the file is empty (0 bytes), expected {EXPECTED}; "
            "copy it again from the recorder",
            path=str(path),
        )
    if head.startswith(MCAP_MAGIC):
        return _finish(path, "mcap", topic_map, _read_mcap)
    if head.startswith(BAG_MAGIC):
        return _finish(path, "ros1bag", topic_map, _read_ros1bag)
    if head.startswith(SQLITE_MAGIC):
        return _finish(path, "rosbag2", topic_map, _read_db3)
    if head.startswith(b"#ROSBAG V"):
        version = head[1:12].decode("ascii", "replace")
        raise InputError(
            f"{path}: {version} bags are not supported (only V2.0); "
            "migrate it with `rosbag fix` or convert it with rosbags-convert",
            path=str(path),
        )
    raise InputError(
        f"{path}: not a log (it starts with {_describe(head)}); expected {EXPECTED}. "
        "Check that the right file was given, or exclude it from the ingest",
        path=str(path),
    )


def _describe(head: bytes) -> str:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"the bytes {head[:8].hex(' ')}"
    return f"the text {text[:12]!r}" if text.isprintable() or "\n" in text else repr(head[:8])


def _finish(path: Path, fmt: str, topic_map, read: Callable) -> DecodedLog:
    collector = _Collector(path, topic_map)
    truncated = read(path, collector)
    if isinstance(truncated, _Collector):  # a salvage pass started over with a fresh collector
        collector, truncated = truncated, truncated.truncated
    return collector.finish(fmt, truncated)


# --- collecting and decoding -----------------------------------------------------------------


@dataclass
class _Connection:
    topic: str
    msgtype: str
    encoding: str
    definition: str | None
    definition_encoding: str | None
    kind: str | None
    decoder: Callable | None = None
    pending: list = field(default_factory=list)
    times: list = field(default_factory=list)
    failures: _Failures = field(default_factory=_Failures)
    size_only: bool = False  # camera without a decoder: count bytes, skip the image


class _Collector:
    """Counts every message, decodes in batches the topics that map to a kind."""

    def __init__(self, path: Path, topic_map: Mapping[str, str] | None) -> None:
        self.path = path
        self.topic_map = dict(topic_map or {})
        self.connections: dict[object, _Connection] = {}
        self.counts: dict[str, int] = {}
        self.info: dict[str, tuple[str, str, str | None]] = {}  # topic -> (msgtype, enc, kind)
        self.parts: dict[str, list[dict[str, np.ndarray]]] = {}
        self.warnings: list[str] = []
        self.start = self.end = None
        self.total = 0
        self.truncated: str | None = None

    def _kind(self, topic: str, msgtype: str) -> str | None:
        for name in (topic, "/" + topic.lstrip("/"), topic.lstrip("/")):
            if name in self.topic_map:
                return self.topic_map[name]
        return DEFAULT_KINDS.get(msgtype)

    def connection(self, key, topic, msgtype, encoding, definition=None, def_encoding=None):
        msgtype = normalize_msgtype(msgtype or "")
        kind = self._kind(topic, msgtype)
        if isinstance(definition, bytes):
            definition = definition.decode("utf-8", "replace")
        self.connections[key] = _Connection(
            topic, msgtype, encoding, definition or None, def_encoding, kind
        )
        self.counts.setdefault(topic, 0)
        self.info.setdefault(topic, (msgtype, encoding, kind))

    def message(self, key, log_time_ns: int, data: bytes) -> None:
        conn = self.connections[key]
        self.total += 1
        self.counts[conn.topic] += 1
        if self.start is None or log_time_ns < self.start:
            self.start = log_time_ns
        if self.end is None or log_time_ns > self.end:
            self.end = log_time_ns
        if conn.kind is None or conn.kind == "ignore":
            return
        conn.pending.append(data)
        conn.times.append(log_time_ns)
        if len(conn.pending) >= BATCH:
            self._flush(conn)

    def _decoder(self, conn: _Connection) -> Callable | None:
        shape = shape_of(conn.msgtype, conn.kind)
        if shape is None:
            return None
        if conn.msgtype in BULK_TYPES and conn.encoding in ("cdr", "ros1"):
            bulk = _bulk_decoder(conn.msgtype, conn.encoding, conn.definition)
            if bulk is not None:
                # the generic decoder builds a typestore (slow): only when a fast batch fails
                return _with_fallback(bulk, lambda: self._generic(conn, shape))
        return self._generic(conn, shape)

    def _generic(self, conn: _Connection, shape: str) -> Callable | None:
        return generic_decoder(
            conn.msgtype,
            shape,
            conn.encoding,
            conn.definition,
            conn.definition_encoding,
            conn.failures,
        )

    def _flush(self, conn: _Connection) -> None:
        if not conn.pending:
            return
        batch, times = conn.pending, np.array(conn.times, dtype=np.int64)
        conn.pending, conn.times = [], []
        if conn.decoder is None and not conn.size_only:
            conn.decoder = self._decoder(conn)
            if conn.decoder is None and conn.kind == "camera":
                conn.size_only = True
        if conn.size_only:
            cols = {
                "stamp_ns": np.zeros(len(batch), np.int64),
                "frame_id": np.array([""] * len(batch), dtype=object),
                "format": np.array([""] * len(batch), dtype=object),
                "bytes": np.array([len(b) for b in batch], np.int64),
            }
        elif conn.decoder is None:
            return
        else:
            cols = conn.decoder(batch)
        index = cols.pop("msg_index", None)
        cols["log_time_ns"] = times if index is None else times[index]
        if conn.kind == "camera":
            cols["topic"] = np.array([conn.topic] * len(cols["log_time_ns"]), dtype=object)
        self.parts.setdefault(conn.topic, []).append(cols)

    def finish(self, fmt: str, truncated: str | None) -> DecodedLog:
        for conn in self.connections.values():
            self._flush(conn)
        kinds = self._final_kinds()
        columns = []
        for topic, parts in self.parts.items():
            msgtype, _, _ = self.info[topic]
            if kinds.get(topic) in (None, "ignore"):
                continue
            names = set(parts[0]).intersection(*parts[1:])
            cols = {n: np.concatenate([p[n] for p in parts]) for n in names}
            columns.append(TopicColumns(topic, msgtype, kinds[topic], self.counts[topic], cols))
        self._failure_warnings()
        tables = build_tables(columns, self.warnings)
        topics = [
            TopicInfo(t, self.info[t][0], self.info[t][1], n, kinds.get(t))
            for t, n in self.counts.items()
        ]
        if not self.total and truncated is None:
            self.warnings.append("the log holds no messages")
        return DecodedLog(
            format=fmt,
            message_count=self.total,
            start_ns=int(self.start or 0),
            end_ns=int(self.end or 0),
            topics=topics,
            warnings=self.warnings,
            truncated=truncated,
            **tables,
        )

    def _final_kinds(self) -> dict[str, str | None]:
        """A topic keeps its kind only if it could be decoded; say why when it could not."""
        kinds: dict[str, str | None] = {}
        for topic, (msgtype, encoding, kind) in self.info.items():
            if kind in (None, "ignore") or topic in self.parts or not self.counts[topic]:
                kinds[topic] = kind
                continue
            kinds[topic] = None
            self.warnings.append(
                f"topic {topic}: type {msgtype} ({encoding}) has no definition in the file and "
                f"no standard definition, so its {self.counts[topic]:,} messages were counted "
                "but not decoded; record the message definitions with the log to use it"
            )
        return kinds

    def _failure_warnings(self) -> None:
        failed: dict[str, list[_Failures]] = {}
        for conn in self.connections.values():
            if conn.failures.count:
                failed.setdefault(conn.topic, []).append(conn.failures)
        for topic, fails in failed.items():
            n = sum(f.count for f in fails)
            self.warnings.append(
                f"topic {topic}: {n:,} messages could not be decoded and were skipped "
                f"(first error: {fails[0].first})"
            )


def _bulk_decoder(msgtype: str, encoding: str, definition: str | None) -> Callable | None:
    """ingest.decode's fast path when it exists (it is written in parallel with this module)."""
    try:
        from ingest import decode
    except ImportError:
        return None
    factory = getattr(decode, "bulk_decoder", None)
    if factory is None:
        return None
    function = factory(msgtype, encoding, definition)
    return function if callable(function) else None


def _with_fallback(bulk: Callable, make_generic: Callable[[], Callable | None]) -> Callable:
    generic: Callable | None = None

    def decode(batch: Sequence[bytes]) -> dict[str, np.ndarray]:
        nonlocal generic
        try:
            return bulk(batch)
        except InputError:
            generic = generic or make_generic()
            if generic is None:
                raise
            # one malformed message fails the whole fast batch; the generic path skips just it
            return generic(batch)

    return decode


# --- MCAP ------------------------------------------------------------------------------------


class _Corrupt(Exception):
    """The container library stopped reading partway (truncated or damaged file)."""


def _guarded(iterator: Iterator) -> Iterator:
    """Re-raise the library's errors as _Corrupt, so errors of our own code still surface."""
    it = iter(iterator)
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except Exception as exc:
            raise _Corrupt(f"{type(exc).__name__}: {exc}") from exc
        yield item


def _read_mcap(path: Path, collector: _Collector):
    from mcap.reader import make_reader

    seen: set[int] = set()
    try:
        with open(path, "rb") as f:
            try:
                reader = make_reader(f)
            except Exception as exc:  # a damaged header: the salvage pass says what it finds
                raise _Corrupt(str(exc)) from exc
            for schema, channel, message in _guarded(reader.iter_messages(log_time_order=False)):
                if channel.id not in seen:
                    seen.add(channel.id)
                    collector.connection(
                        channel.id,
                        channel.topic,
                        schema.name if schema else "",
                        channel.message_encoding,
                        schema.data if schema else None,
                        schema.encoding if schema else None,
                    )
                collector.message(channel.id, message.log_time, message.data)
    except _Corrupt:
        fresh = _Collector(path, collector.topic_map)
        fresh.truncated = _salvage_mcap(path, fresh)
        return fresh
    return None


def _salvage_mcap(path: Path, collector: _Collector) -> str:
    """Walk the MCAP records in file order and keep every complete message before the cut.

    A chunk cut in two is decompressed as far as it goes (none / lz4 / zstd stream), so the
    messages in its first part are kept too.
    """
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        size = len(data)
        schemas: dict[int, tuple[str, str, bytes]] = {}
        state = {"channels": set(), "messages": 0}

        def handle(opcode: int, body: bytes | memoryview) -> None:
            if opcode == 0x03:  # Schema
                sid = struct.unpack_from("<H", body)[0]
                name, pos = _mcap_str(body, 2)
                enc, pos = _mcap_str(body, pos)
                n = struct.unpack_from("<I", body, pos)[0]
                schemas[sid] = (name, enc, bytes(body[pos + 4 : pos + 4 + n]))
            elif opcode == 0x04:  # Channel
                cid, sid = struct.unpack_from("<HH", body)
                topic, pos = _mcap_str(body, 4)
                msg_enc, pos = _mcap_str(body, pos)
                name, enc, text = schemas.get(sid, ("", None, None))
                collector.connection(cid, topic, name, msg_enc, text, enc)
                state["channels"].add(cid)
            elif opcode == 0x05:  # Message
                cid, _seq, log_time, _pub = struct.unpack_from("<HIQQ", body)
                if cid in state["channels"]:
                    collector.message(cid, log_time, bytes(body[22:]))
                    state["messages"] += 1

        pos, where = len(MCAP_MAGIC), None
        while where is None:
            if pos + 9 > size:
                where = f"at byte {pos:,}" if pos < size else None
                break
            opcode, length = struct.unpack_from("<BQ", data, pos)
            body_start, body_end = pos + 9, pos + 9 + length
            if opcode in (0x02, 0x0F):  # Footer / DataEnd: the data section is complete
                break
            if body_end > size:
                where = f"inside a record starting at byte {pos:,}"
                if opcode == 0x06:
                    _salvage_chunk(data[body_start:size], handle, partial=True)
                break
            body = data[body_start:body_end]  # a copy: nothing points into the mmap
            try:
                if opcode == 0x06:
                    _salvage_chunk(body, handle, partial=False)
                else:
                    handle(opcode, body)
            except (struct.error, ValueError, RuntimeError) as exc:
                where = f"at a damaged record at byte {pos:,} ({exc})"
            pos = body_end
        if where is None:
            where = f"after byte {size:,} before its summary section"
    if state["messages"] == 0 and not collector.total:
        raise InputError(
            f"{path}: the MCAP file is damaged or cut short ({where}) and holds no complete "
            "message; copy it again from the recorder",
            path=str(path),
        )
    return (
        f"the MCAP file ends early ({size:,} bytes; cut {where}); "
        f"salvaged {collector.total:,} complete messages before the cut"
    )


def _mcap_str(body: bytes | memoryview, pos: int) -> tuple[str, int]:
    n = struct.unpack_from("<I", body, pos)[0]
    return bytes(body[pos + 4 : pos + 4 + n]).decode("utf-8"), pos + 4 + n


def _salvage_chunk(body: bytes, handle: Callable, partial: bool) -> None:
    if len(body) < 28:
        return
    pos = 28  # start, end, uncompressed size (u64 each), crc (u32)
    compression, pos = _mcap_str(body, pos)
    records_length = struct.unpack_from("<Q", body, pos)[0]
    records = bytes(body[pos + 8 : pos + 8 + records_length])
    if compression == "zstd":
        import zstandard

        stream = zstandard.ZstdDecompressor().decompressobj()
        records = stream.decompress(records) if partial else _zstd(records)
    elif compression == "lz4":
        import lz4.frame

        records = lz4.frame.LZ4FrameDecompressor().decompress(records)
    elif compression:
        raise ValueError(f"unknown chunk compression {compression!r}")
    inner = 0
    while inner + 9 <= len(records):
        opcode, length = struct.unpack_from("<BQ", records, inner)
        if inner + 9 + length > len(records):
            break  # the message cut in two: everything before it is kept
        handle(opcode, memoryview(records)[inner + 9 : inner + 9 + length])
        inner += 9 + length


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


# --- ROS 1 bag -------------------------------------------------------------------------------


def _read_ros1bag(path: Path, collector: _Collector):
    from rosbags.rosbag1 import Reader, ReaderError

    try:
        reader = Reader(path)
        reader.open()
    except ReaderError:
        # No usable index (the recorder died before writing it): walk the records instead.
        fresh = _Collector(path, collector.topic_map)
        fresh.truncated = _salvage_bag(path, fresh)
        return fresh
    try:
        for conn in reader.connections:
            collector.connection(
                conn.id, conn.topic, conn.msgtype, "ros1", conn.msgdef.data, "ros1msg"
            )
        for conn, t_ns, raw in _guarded(reader.messages()):
            collector.message(conn.id, t_ns, raw)
    except _Corrupt as exc:
        fresh = _Collector(path, collector.topic_map)
        fresh.truncated = _salvage_bag(path, fresh, str(exc))
        return fresh
    finally:
        reader.close()
    return None


def _bag_header(buf: bytes) -> dict[str, bytes]:
    fields, pos = {}, 0
    while pos + 4 <= len(buf):
        n = struct.unpack_from("<I", buf, pos)[0]
        name, _, value = buf[pos + 4 : pos + 4 + n].partition(b"=")
        fields[name.decode("ascii", "replace")] = value
        pos += 4 + n
    return fields


def _bag_records(buf, start: int = 0) -> Iterator[tuple[dict[str, bytes], memoryview, int]]:
    """(header, data, end offset) of each complete record in buf; stops at the first cut one."""
    pos, size = start, len(buf)
    while pos + 4 <= size:
        hlen = struct.unpack_from("<I", buf, pos)[0]
        if pos + 8 + hlen > size:
            return
        header = _bag_header(bytes(buf[pos + 4 : pos + 4 + hlen]))
        dlen = struct.unpack_from("<I", buf, pos + 4 + hlen)[0]
        end = pos + 8 + hlen + dlen
        if end > size:
            yield header, memoryview(buf)[pos + 8 + hlen : size], -1  # cut inside the data
            return
        yield header, memoryview(buf)[pos + 8 + hlen : end], end
        pos = end


def _salvage_bag(path: Path, collector: _Collector, cause: str = "no index") -> str:
    """Sequential parse of a ROS 1 bag: connections and messages from every readable chunk."""
    import lz4.frame

    data = path.read_bytes()
    pos, messages, where = len(BAG_MAGIC), 0, None
    seen: set[int] = set()

    def handle(header: dict[str, bytes], body: memoryview) -> int:
        op = header.get("op", b"\x00")[:1]
        if op == b"\x07":  # connection: topic in the record header, type and definition in data
            conn = struct.unpack("<I", header["conn"])[0]
            if conn not in seen:
                seen.add(conn)
                info = _bag_header(bytes(body))
                collector.connection(
                    conn,
                    header["topic"].decode(),
                    info.get("type", b"").decode(),
                    "ros1",
                    info.get("message_definition", b"").decode("utf-8", "replace"),
                    "ros1msg",
                )
        elif op == b"\x02":  # message data
            conn = struct.unpack("<I", header["conn"])[0]
            sec, nsec = struct.unpack("<II", header["time"])
            if conn in seen:
                collector.message(conn, sec * 1_000_000_000 + nsec, bytes(body))
                return 1
        return 0

    for header, body, end in _bag_records(data, pos):
        op = header.get("op", b"\x00")[:1]
        if op == b"\x05":  # chunk: bz2 / lz4 / none, decompressed as far as the bytes go
            compression = header.get("compression", b"none").decode()
            try:
                if compression == "bz2":
                    raw = bz2.BZ2Decompressor().decompress(bytes(body))
                elif compression == "lz4":
                    raw = lz4.frame.LZ4FrameDecompressor().decompress(bytes(body))
                else:
                    raw = bytes(body)
            except (OSError, RuntimeError, ValueError) as exc:
                where = f"a damaged chunk at byte {pos:,} ({exc})"
                break
            for inner, inner_body, inner_end in _bag_records(raw):
                if inner_end < 0:
                    break
                messages += handle(inner, inner_body)
        elif end >= 0:
            messages += handle(header, body)
        if end < 0:
            where = f"inside a record starting at byte {pos:,}"
            break
        pos = end
    if where is None and pos < len(data):
        where = f"at byte {pos:,}"
    if not messages:
        raise InputError(
            f"{path}: the ROS 1 bag cannot be read ({cause}) and no complete message could be "
            "salvaged; copy it again from the recorder, or try `rosbag reindex`",
            path=str(path),
        )
    where = where or f"after byte {len(data):,}, before its index"
    return (
        f"the ROS 1 bag ends early or lost its index ({len(data):,} bytes; cut {where}); "
        f"salvaged {messages:,} complete messages before the cut"
    )


# --- ROS 2 bags ------------------------------------------------------------------------------


def _read_rosbag2_folder(path: Path, collector: _Collector):
    from rosbags.rosbag2 import Reader

    try:
        with Reader(path) as reader:
            for conn in reader.connections:
                msgdef = conn.msgdef
                fmt = getattr(getattr(msgdef, "format", None), "name", "")
                collector.connection(
                    conn.id,
                    conn.topic,
                    conn.msgtype,
                    getattr(conn.ext, "serialization_format", "cdr"),
                    getattr(msgdef, "data", None),
                    "ros2idl" if fmt == "IDL" else "ros2msg",
                )
            for conn, t_ns, raw in _guarded(reader.messages()):
                collector.message(conn.id, t_ns, raw)
    except (_Corrupt, sqlite3.Error) as exc:
        raise InputError(
            f"{path}: the rosbag2 folder cannot be read ({exc}); "
            "check that its files are complete, or re-record it",
            path=str(path),
        ) from exc
    except Exception as exc:
        if type(exc).__module__.startswith("rosbags"):
            raise InputError(
                f"{path}: not a readable rosbag2 folder ({exc}); check its metadata.yaml",
                path=str(path),
            ) from exc
        raise
    return None


def _read_db3(path: Path, collector: _Collector):
    """A ROS 2 sqlite3 file, read with sqlite3 directly: works without metadata.yaml."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise InputError(f"{path}: cannot open the sqlite file ({exc})", path=str(path)) from exc
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"topics", "messages"} <= tables:
            raise InputError(
                f"{path}: an sqlite database but not a ROS 2 bag (no topics/messages tables); "
                "pass a rosbag2 .db3 file",
                path=str(path),
            )
        definitions = {}
        if "message_definitions" in tables:
            query = "SELECT topic_type, encoding, encoded_message_definition FROM {}"
            for msgtype, encoding, text in con.execute(query.format("message_definitions")):
                definitions[msgtype] = (text, encoding)
        for tid, name, msgtype, fmt in con.execute(
            "SELECT id, name, type, serialization_format FROM topics"
        ):
            text, encoding = definitions.get(msgtype, (None, None))
            collector.connection(tid, name, msgtype, fmt, text, encoding)
        cursor = con.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY timestamp")
        for tid, t_ns, data in cursor:
            collector.message(tid, t_ns, data)
    except sqlite3.Error as exc:
        raise InputError(
            f"{path}: the ROS 2 .db3 file is damaged or incomplete ({exc}); copy it again from "
            "the recorder, or recover it with `sqlite3 file.db3 .recover`",
            path=str(path),
        ) from exc
    finally:
        con.close()
    return None


__all__ = ["DEFAULT_KINDS", "KINDS", "DecodedLog", "TopicInfo", "read_log"]
