"""ROS 1 bags (format 2.0): a record walker that salvages per chunk.

The bag header points at the index section (connection and chunk-info records: how many
messages each chunk holds per connection). The chunks are walked in file order, each
decompressed once (none / bz2 / lz4); the index-data records after each chunk give its messages'
offsets, so a damaged chunk still yields every message that parses where the index puts one.
After a damaged chunk the walk goes on at the next chunk the index knows of, or at the next
record that parses. An unindexed bag (the recorder stopped before writing the index) is read
to its end and reported as incomplete.
"""

from __future__ import annotations

import re
import struct
from bisect import bisect_right
from operator import itemgetter

from ingest.readers._collect import Scan, _Collector, chunk_outcome
from ingest.readers._io import decompress

MAGIC = b"#ROSBAG V2.0\n"
MESSAGE, BAG_HEADER, INDEX_DATA, CHUNK, CHUNK_INFO, CONNECTION = 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
COMPRESSIONS = {"none": "", "bz2": "bz2", "lz4": "lz4"}
MAX_HEADER = 1 << 20  # a record header longer than this is damage (real ones are < 200 bytes)

_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")
_TIME = struct.Struct("<II")
_CHUNK_OP = re.compile(rb"op=\x05")


class _Bad(Exception):
    """A record that does not parse: one of its lengths or fields is not what it claims."""


def normalize_topic(name: str) -> str:
    """'//a//b' -> '/a/b' (what rosbags does, so topics match between readers)."""
    return f"{'/' * name.startswith('/')}{'/'.join(x for x in name.split('/') if x)}"


def read_bag(data, collector: _Collector, base: int = 0) -> Scan:
    """Feed every readable message of the ROS 1 bag bytes `data` to `collector`."""
    return _Reader(data, collector, base).read()


def _fields(buf, start: int, stop: int) -> dict[str, bytes]:
    fields, pos = {}, start
    while pos < stop:
        if pos + 4 > stop:
            raise _Bad("a header field length is cut short")
        (n,) = _U32.unpack_from(buf, pos)
        if pos + 4 + n > stop:
            raise _Bad("a header field runs past its header")
        name, eq, value = bytes(buf[pos + 4 : pos + 4 + n]).partition(b"=")
        if not eq:
            raise _Bad("a header field has no '='")
        fields[name.decode("ascii", "replace")] = value
        pos += 4 + n
    return fields


def _record(buf, pos: int, end: int) -> tuple[dict[str, bytes], int, int]:
    """(header fields, data start, data end) of the record at `pos`; _Bad if it does not fit."""
    if pos + 4 > end:
        raise _Bad("a record header length is cut short")
    (hlen,) = _U32.unpack_from(buf, pos)
    if hlen > MAX_HEADER or pos + 8 + hlen > end:
        raise _Bad("a record header runs past the end")
    fields = _fields(buf, pos + 4, pos + 4 + hlen)
    (dlen,) = _U32.unpack_from(buf, pos + 4 + hlen)
    start = pos + 8 + hlen
    if start + dlen > end:
        raise _Bad(f"a record of {dlen:,} bytes runs past the end")
    return fields, start, start + dlen


def _op(fields: dict[str, bytes]) -> int:
    op = fields.get("op", b"")
    if len(op) != 1:
        raise _Bad("a record without a valid op field")
    return op[0]


def _u32(fields: dict[str, bytes], name: str) -> int:
    value = fields.get(name, b"")
    if len(value) != 4:
        raise _Bad(f"field {name} is not 4 bytes")
    return _U32.unpack(value)[0]


def _u64(fields: dict[str, bytes], name: str) -> int:
    value = fields.get(name, b"")
    if len(value) != 8:
        raise _Bad(f"field {name} is not 8 bytes")
    return _U64.unpack(value)[0]


def _time(fields: dict[str, bytes], name: str) -> int:
    value = fields.get(name, b"")
    if len(value) != 8:
        raise _Bad(f"field {name} is not 8 bytes")
    sec, nsec = _TIME.unpack(value)
    return sec * 1_000_000_000 + nsec


def _message_layout(raw: bytes, pos: int) -> tuple | None:
    """A struct reading the message record at `pos` in one call, and how to check the next.

    A writer lays out every message header the same way (conn, op and time in some order), so
    the layout of the first one lets the others be read without parsing their fields.
    """
    (hlen,) = _U32.unpack_from(raw, pos)
    fmt, literals, literal_at, index = "<I", [hlen], [0], 1
    conn_i = sec_i = None
    p = pos + 4
    while p < pos + 4 + hlen:
        (n,) = _U32.unpack_from(raw, p)
        name = bytes(raw[p + 4 : p + 4 + n]).partition(b"=")[0]
        size = n - len(name) - 1
        fmt += f"I{len(name) + 1}s"
        literals += [n, name + b"="]
        literal_at += [index, index + 1]
        index += 2
        if name == b"conn" and size == 4:
            fmt, conn_i, index = fmt + "I", index, index + 1
        elif name == b"time" and size == 8:
            fmt, sec_i, index = fmt + "II", index, index + 2
        elif name == b"op" and size == 1:
            fmt += "B"
            literals.append(MESSAGE)
            literal_at.append(index)
            index += 1
        else:
            return None
        p += 4 + n
    if conn_i is None or sec_i is None:
        return None
    return struct.Struct(fmt + "I"), itemgetter(*literal_at), tuple(literals), conn_i, sec_i, index


class _Reader:
    def __init__(self, data, collector: _Collector, base: int) -> None:
        self.data = data
        self.size = len(data)
        self.c = collector
        self.base = base
        self.scan = Scan()
        self.chunk_counts: dict[int, int] = {}  # chunk position -> messages (chunk infos)
        self.connections: dict[int, tuple[str, dict[str, bytes]]] = {}
        self.known_lost = 0
        self.unknown_lost = False
        self.layout: tuple | None = None  # how this writer lays out message headers
        self.index_complete = False  # every connection and chunk info the header counts
        self.orphans_counted = False  # the index data after a skipped stretch is counted
        self.reported_cut = False
        self.before = collector.total  # a folder reads several files into one collector

    def read(self) -> Scan:
        d, size = self.data, self.size
        try:
            fields, _, stop = _record(d, len(MAGIC), size)
            if _op(fields) != BAG_HEADER:
                raise _Bad("the first record is not the bag header")
            index_pos = _u64(fields, "index_pos")
            counts = _u32(fields, "conn_count") + _u32(fields, "chunk_count")
        except (_Bad, struct.error) as exc:
            self.scan.problem(f"the bag header is damaged ({exc})")
            stop, index_pos, counts = len(MAGIC), 0, None
            self.unknown_lost = True
        end = size
        if index_pos == 0 and counts is not None:
            self.scan.problem("the bag has no index: its recording was not closed properly")
            self.unknown_lost = True
        elif index_pos > size:  # cut short: _cut says where, unless the cut is between records
            self.unknown_lost = True
        elif index_pos:
            end = max(index_pos, stop)
            self._read_index(index_pos, counts)
        self._walk(stop, end)
        if index_pos > size and not self.reported_cut:
            self.scan.problem(
                f"the file is cut short: it has {size:,} bytes, its index would start at byte "
                f"{index_pos:,}"
            )
        return self._result()

    def _read_index(self, pos: int, want: int | None) -> None:
        """Connections and chunk infos; they say what the chunks hold."""
        d, size, n = self.data, self.size, 0
        try:
            while pos < size and (want is None or n < want):
                fields, start, stop = _record(d, pos, size)
                op = _op(fields)
                if op == CONNECTION:
                    self._connection(fields, start, stop)
                elif op == CHUNK_INFO:
                    count = _u32(fields, "count")
                    if start + 8 * count > stop:
                        raise _Bad("a chunk info's counts do not fit it")
                    counts = struct.unpack_from(f"<{2 * count}I", d, start)
                    self.chunk_counts[_u64(fields, "chunk_pos")] = sum(counts[1::2])
                n, pos = n + 1, stop
        except (_Bad, struct.error, UnicodeDecodeError) as exc:
            self.scan.problem(f"the bag index is damaged or cut short at byte {pos:,} ({exc})")
            return
        if pos < size:
            self.scan.problem(f"{size - pos:,} bytes after the end of the bag (appended?)")
        self.index_complete = True

    def _result(self) -> Scan:
        scan = self.scan
        found = self.c.total - self.before
        walked = None if self.unknown_lost else found + self.known_lost
        if self.index_complete and self.chunk_counts:
            scan.expected = max(sum(self.chunk_counts.values()), walked or 0)
            scan.source = "the bag's chunk index"
        else:
            scan.expected = walked
            scan.source = "the index data after each chunk" if self.known_lost else "a full scan"
        return scan

    def _connection(self, fields: dict[str, bytes], start: int, stop: int, buf=None) -> None:
        conn = _u32(fields, "conn")
        if conn in self.connections:
            return
        info = _fields(self.data if buf is None else buf, start, stop)
        topic = normalize_topic((fields.get("topic") or info.get("topic", b"")).decode("utf-8"))
        self.connections[conn] = (topic, info)
        self.c.connection(
            self.base + conn,
            topic,
            info.get("type", b"").decode("utf-8", "replace"),
            "ros1",
            info.get("message_definition", b"").decode("utf-8", "replace"),
            "ros1msg",
        )

    # --- the chunk section ----------------------------------------------------------------

    def _walk(self, pos: int, end: int) -> None:
        d = self.data
        while pos < end:
            try:
                fields, start, stop = _record(d, pos, end)
                op = _op(fields)
                if op == CHUNK:
                    self.orphans_counted = False
                    stop = self._chunk(pos, fields, start, stop, end)
                elif op == CONNECTION:
                    self._connection(fields, start, stop)
                elif op == MESSAGE:
                    self._message(fields, start, stop)
                elif op == INDEX_DATA and not self.orphans_counted:
                    self.known_lost += _u32(fields, "count")  # its chunk could not be read
            except (_Bad, struct.error, UnicodeDecodeError) as exc:
                nxt = self._next_chunk(pos + 1, end)
                if nxt >= end and end == self.size and self._cut(pos, end):
                    return
                self.scan.problem(f"bytes {pos:,}-{nxt:,} do not parse ({exc}); skipped")
                lost = [n for p, n in self.chunk_counts.items() if pos <= p < nxt]
                self.known_lost += sum(lost)
                self.orphans_counted = bool(lost)
                if not lost and not self._index_data_at(nxt, end):
                    self.unknown_lost = True
                pos = nxt
                continue
            pos = stop

    def _lost(self, pos: int, listed: int | None, text: str) -> None:
        self.scan.problem(text)
        self.reported_cut = self.reported_cut or "cut short" in text
        if listed is None and pos not in self.chunk_counts:
            self.unknown_lost = True

    def _index_data_at(self, pos: int, end: int) -> bool:
        try:
            return _op(_record(self.data, pos, end)[0]) == INDEX_DATA
        except (_Bad, struct.error):
            return False

    def _cut(self, pos: int, end: int) -> bool:
        """The file ends inside the record at `pos`: salvage a chunk's first part, say so."""
        d = self.data
        try:
            (hlen,) = _U32.unpack_from(d, pos)
            if hlen > MAX_HEADER:
                return False
            text = f"the file is cut short at byte {self.size:,}, inside the record at byte {pos:,}"
            if pos + 8 + hlen > end:
                self._lost(pos, None, text)
                return True
            fields = _fields(d, pos + 4, pos + 4 + hlen)
            (dlen,) = _U32.unpack_from(d, pos + 4 + hlen)
        except (_Bad, struct.error):
            return False
        start = pos + 8 + hlen
        if start + dlen <= end:
            return False
        compression = COMPRESSIONS.get(fields.get("compression", b"").decode("ascii", "replace"))
        if fields.get("op") == bytes([CHUNK]) and compression is not None:
            before = self.c.total
            raw, _ = decompress(compression, bytes(d[start:end]), None)
            self._careful(raw, 0, None)
            text += f" (a chunk; {self.c.total - before:,} of its messages recovered)"
        self._lost(pos, None, text)
        return True

    def _next_chunk(self, pos: int, end: int) -> int:
        """The next chunk the index knows of, else the next record that parses as a chunk."""
        marks = sorted(self.chunk_counts)
        for mark in marks[bisect_right(marks, pos - 1) :]:
            if mark < end and self._is_chunk(mark, end):
                return mark
        while True:
            found = _CHUNK_OP.search(self.data, pos, end)
            if found is None:
                return end
            # the op field sits somewhere in the first bytes of the header: try starts before it
            for start in range(max(pos, found.start() - 64), found.start() - 3):
                if self._is_chunk(start, end) or self._is_index_data(start, end):
                    return start
            pos = found.start() + 1

    def _is_chunk(self, pos: int, end: int) -> bool:
        try:
            fields, _, _ = _record(self.data, pos, end)
            return _op(fields) == CHUNK and "size" in fields and "compression" in fields
        except (_Bad, struct.error):
            return False

    def _is_index_data(self, pos: int, end: int) -> bool:
        try:
            fields, _, _ = _record(self.data, pos, end)
            return _op(fields) == INDEX_DATA and "count" in fields
        except (_Bad, struct.error):
            return False

    def _message(self, fields: dict[str, bytes], start: int, stop: int) -> None:
        conn = _u32(fields, "conn")
        if conn in self.connections:
            self.c.message(self.base + conn, _time(fields, "time"), bytes(self.data[start:stop]))

    def _chunk(self, pos: int, fields: dict[str, bytes], start: int, stop: int, end: int) -> int:
        compression = COMPRESSIONS.get(fields.get("compression", b"").decode("ascii", "replace"))
        if compression is None:
            raise _Bad(f"unknown chunk compression {fields.get('compression', b'')[:20]!r}")
        size = _u32(fields, "size")
        after, indexes = self._indexes_after(stop, end)
        listed = self.chunk_counts.get(pos)
        if indexes is not None:
            listed = len(indexes)
        raw, why = decompress(compression, bytes(self.data[start:stop]), size)
        if why is None and len(raw) != size:
            why = f"it decompresses to {len(raw):,} bytes, not the {size:,} it claims"
        before = self.c.total
        if why is None:
            stopped = self._records(raw)
            if stopped is not None:
                why = f"a record inside it does not parse ({stopped[1]})"
                self._careful(raw, stopped[0], indexes)
        else:
            self._careful(raw, 0, indexes)
        got = self.c.total - before
        lost, text = chunk_outcome(pos, got, listed, why)
        self.known_lost += lost
        if text and listed is None:  # damaged, and nothing says how many it held
            self._lost(pos, None, text)
        elif text:
            self.scan.problem(text)
        return after

    def _indexes_after(self, pos: int, end: int) -> tuple[int, dict[int, tuple[int, int]] | None]:
        """The index-data records after a chunk: {offset: (connection, time)}."""
        d = self.data
        entries: dict[int, tuple[int, int]] = {}
        found = False
        while pos < end:
            try:
                fields, start, stop = _record(d, pos, end)
                if _op(fields) != INDEX_DATA:
                    break
                conn, n = _u32(fields, "conn"), _u32(fields, "count")
                if start + 12 * n > stop:
                    break
            except (_Bad, struct.error):
                break
            for p in range(start, start + 12 * n, 12):
                sec, nsec, offset = struct.unpack_from("<III", d, p)
                entries[offset] = (conn, sec * 1_000_000_000 + nsec)
            found = True
            pos = stop
        return pos, (entries if found else None)

    def _records(self, raw: bytes) -> tuple[int, str] | None:
        """Every record of an intact chunk, fast; (position, why) where one does not parse."""
        conns, message, base = self.connections, self.c.message, self.base
        pos, n = 0, len(raw)
        while pos < n:
            layout = self.layout
            if layout is not None and pos + layout[0].size <= n:
                shape, literal, literals, conn_i, sec_i, dlen_i = layout
                values = shape.unpack_from(raw, pos)
                if literal(values) == literals:
                    start = pos + shape.size
                    stop = start + values[dlen_i]
                    if stop > n:
                        return pos, "a message runs past the chunk"
                    conn = values[conn_i]
                    if conn in conns:
                        t = values[sec_i] * 1_000_000_000 + values[sec_i + 1]
                        message(base + conn, t, raw[start:stop])
                    pos = stop
                    continue
            try:
                fields, start, stop = _record(raw, pos, n)
                op = _op(fields)
                if op == MESSAGE:
                    self._chunk_message(raw, fields, start, stop)
                    if layout is None:
                        self.layout = _message_layout(raw, pos)
                elif op == CONNECTION:
                    self._connection_in(raw, fields, start, stop)
            except (_Bad, struct.error, UnicodeDecodeError) as exc:
                return pos, str(exc)
            pos = stop
        return None

    def _chunk_message(self, raw: bytes, fields, start: int, stop: int) -> bool:
        conn = _u32(fields, "conn")
        if conn not in self.connections:
            return False
        self.c.message(self.base + conn, _time(fields, "time"), raw[start:stop])
        return True

    def _connection_in(self, raw: bytes, fields, start: int, stop: int) -> None:
        self._connection(fields, start, stop, raw)

    def _careful(self, raw: bytes, pos: int, entries: dict[int, tuple[int, int]] | None) -> None:
        """The records of a damaged chunk from `pos` on (see mcap._Reader._careful)."""
        n, first = len(raw), pos
        landed: set[int] = set()
        while pos < n:
            try:
                fields, start, stop = _record(raw, pos, n)
                op = _op(fields)
            except (_Bad, struct.error):
                pos += 1  # records here are small: a byte-wise search costs little
                continue
            try:
                if op == CONNECTION:
                    self._connection_in(raw, fields, start, stop)
                elif (
                    op == MESSAGE
                    and (entries is None or self._matches(fields, entries, pos))
                    and self._chunk_message(raw, fields, start, stop)
                ):
                    landed.add(pos)
            except (_Bad, UnicodeDecodeError):
                pass
            pos = stop
        for offset in sorted(entries or ()):  # indexed messages the walk did not reach
            if offset in landed or not first <= offset < n:
                continue
            try:
                fields, start, stop = _record(raw, offset, n)
                if _op(fields) == MESSAGE and self._matches(fields, entries, offset):
                    self._chunk_message(raw, fields, start, stop)
            except (_Bad, struct.error):
                continue

    @staticmethod
    def _matches(fields, entries: dict[int, tuple[int, int]], pos: int) -> bool:
        try:
            return entries.get(pos) == (_u32(fields, "conn"), _time(fields, "time"))
        except _Bad:
            return False
