"""MCAP: a record walker that treats every length, offset and CRC in the file as a claim to check.

One pass over the data section in file order, each chunk decompressed once and its CRC checked.
The summary section, when the footer points at an intact one, says what should exist:
Statistics gives the message count, chunk indexes say where chunks start and end. Each chunk's
message indexes (the records after it) say how many messages it holds and where, so a damaged
chunk still gives every message that parses at an indexed offset. Without any index, a damaged
stretch is skipped by scanning for the next record that parses.

Every variant the specification allows reads the same way: Channel and Schema records only in
the data section (inside chunks), no summary, no message indexes, unchunked messages,
out-of-order log times, padded records, attachments, metadata.
"""

from __future__ import annotations

import contextlib
import re
import struct
import zlib
from bisect import bisect_right
from dataclasses import dataclass, field

from ingest.readers._collect import Scan, _Collector, chunk_outcome
from ingest.readers._io import decompress

MAGIC = b"\x89MCAP0\r\n"
HEADER, FOOTER, SCHEMA, CHANNEL, MESSAGE, CHUNK, MESSAGE_INDEX, CHUNK_INDEX = range(1, 9)
ATTACHMENT, STATISTICS, METADATA, DATA_END = 0x09, 0x0B, 0x0C, 0x0F
COMPRESSIONS = ("", "zstd", "lz4")
FOOTER_SIZE = 9 + 20  # opcode, length, summary_start, summary_offset_start, summary_crc

_RECORD = struct.Struct("<BQ")
_MESSAGE = struct.Struct("<HIQQ")  # channel id, sequence, log time, publish time
_CHUNK = struct.Struct("<QQQI")  # start, end, uncompressed size, uncompressed crc
_U16, _U32, _U64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")
_ENTRY = struct.Struct("<QQ")  # message index entry: log time, offset
# opcodes a record may have where a walk resumes after damage (data section; inside a chunk)
_DATA_OPS = re.compile(rb"[\x03\x04\x05\x06\x07\x09\x0c\x0f]")
_CHUNK_OPS = re.compile(rb"[\x03\x04\x05]")
_CRC_PIECE = 1 << 24


class _Bad(Exception):
    """A record that does not parse: one of its lengths or fields is not what it claims."""


@dataclass
class _Summary:
    """What an intact summary section says the data section holds."""

    schemas: dict[int, tuple[str, str, bytes]] = field(default_factory=dict)
    channels: dict[int, tuple[int, str, str]] = field(default_factory=dict)
    chunks: dict[int, tuple[int, dict[int, int]]] = field(default_factory=dict)  # start -> ...
    message_count: int | None = None


def read_mcap(data, collector: _Collector, base: int = 0) -> Scan:
    """Feed every readable message of the MCAP bytes `data` to `collector`; say what is lost.

    `base` is added to channel ids (a rosbag2 folder reads several files into one collector).
    """
    return _Reader(data, collector, base).read()


def _string(buf, pos: int, end: int) -> tuple[str, int]:
    if pos + 4 > end:
        raise _Bad("a string length runs past its record")
    (n,) = _U32.unpack_from(buf, pos)
    stop = pos + 4 + n
    if stop > end:
        raise _Bad("a string runs past its record")
    try:
        return bytes(buf[pos + 4 : stop]).decode("utf-8"), stop
    except UnicodeDecodeError as exc:
        raise _Bad("a string is not UTF-8") from exc


def _blob(buf, pos: int, end: int, width: struct.Struct = _U32) -> tuple[bytes, int]:
    if pos + width.size > end:
        raise _Bad("a byte-array length runs past its record")
    (n,) = width.unpack_from(buf, pos)
    stop = pos + width.size + n
    if stop > end:
        raise _Bad("a byte array runs past its record")
    return bytes(buf[pos + width.size : stop]), stop


def _schema(buf, body: int, end: int) -> tuple[int, tuple[str, str, bytes]]:
    if body + 2 > end:
        raise _Bad("a Schema record is too short")
    (sid,) = _U16.unpack_from(buf, body)
    name, pos = _string(buf, body + 2, end)
    encoding, pos = _string(buf, pos, end)
    text, _ = _blob(buf, pos, end)
    return sid, (name, encoding, text)


def _channel(buf, body: int, end: int) -> tuple[int, tuple[int, str, str]]:
    if body + 4 > end:
        raise _Bad("a Channel record is too short")
    cid, sid = struct.unpack_from("<HH", buf, body)
    topic, pos = _string(buf, body + 4, end)
    encoding, pos = _string(buf, pos, end)
    _blob(buf, pos, end)  # metadata map: only its length is checked
    return cid, (sid, topic, encoding)


def _message_index(buf, body: int, end: int) -> tuple[int, list[tuple[int, int]]]:
    if body + 6 > end:
        raise _Bad("a MessageIndex record is too short")
    (cid,) = _U16.unpack_from(buf, body)
    (n,) = _U32.unpack_from(buf, body + 2)
    if n % 16 or body + 6 + n > end:
        raise _Bad("a MessageIndex record's entries do not fit it")
    return cid, [_ENTRY.unpack_from(buf, p) for p in range(body + 6, body + 6 + n, 16)]


class _Reader:
    def __init__(self, data, collector: _Collector, base: int) -> None:
        self.data = data
        self.size = len(data)
        self.c = collector
        self.base = base
        self.scan = Scan()
        self.schemas: dict[int, tuple[str, str, bytes]] = {}
        self.channels: dict[int, tuple[int, str, str]] = {}
        self.summary: _Summary | None = None
        self.unattributed = 0  # messages whose Channel record is nowhere to be read
        self.known_lost = 0  # messages an index lists that could not be read
        self.unknown_lost = False  # damage where nothing says how many messages were there
        self.chunked_crc = True  # every chunk had a CRC: the data-section CRC adds nothing
        self.loose = False  # records outside chunks that only the data-section CRC covers
        self.counted: set[int] = set()  # MessageIndex offsets already counted as lost
        self.before = collector.total  # a folder reads several files into one collector

    # --- the file as a whole --------------------------------------------------------------

    def read(self) -> Scan:
        footer = self._footer()
        end = self.size
        if footer is not None:
            fpos, summary_start = footer
            end = summary_start if len(MAGIC) < summary_start <= fpos else fpos
        self._walk(len(MAGIC), end, footer is not None)
        return self._result()

    def _footer(self) -> tuple[int, int] | None:
        """(footer position, summary start) when the file ends with an intact footer."""
        d, size = self.data, self.size
        fpos = size - len(MAGIC) - FOOTER_SIZE
        if fpos < len(MAGIC) or d[size - len(MAGIC) :] != MAGIC:
            return None
        opcode, length = _RECORD.unpack_from(d, fpos)
        if opcode != FOOTER or length != 20:
            return None
        summary_start, _, crc = struct.unpack_from("<QQI", d, fpos + 9)
        if summary_start == 0:
            return fpos, 0
        if not len(MAGIC) < summary_start <= fpos:
            self.scan.problem(
                f"the footer points at a summary outside the file ({summary_start:,})"
            )
            return fpos, 0
        if crc and self._crc(summary_start, fpos + 9 + 16) != crc:
            self.scan.problem(
                f"the summary section (bytes {summary_start:,}-{fpos:,}) fails its CRC; its "
                "indexes and statistics were not used"
            )
            return fpos, summary_start
        self.summary = self._read_summary(summary_start, fpos)
        return fpos, summary_start

    def _read_summary(self, start: int, stop: int, quiet: bool = False) -> _Summary:
        summary = _Summary()
        d, pos = self.data, start
        try:
            while pos + 9 <= stop:
                opcode, length = _RECORD.unpack_from(d, pos)
                body, end = pos + 9, pos + 9 + length
                if end > stop:
                    raise _Bad(f"a record at byte {pos:,} runs past the summary")
                if opcode == SCHEMA:
                    sid, value = _schema(d, body, end)
                    summary.schemas[sid] = value
                elif opcode == CHANNEL:
                    cid, value = _channel(d, body, end)
                    summary.channels[cid] = value
                elif opcode == CHUNK_INDEX:
                    self._chunk_index(summary, body, end)
                elif opcode == STATISTICS:
                    if length < 8:
                        raise _Bad("a Statistics record is too short")
                    summary.message_count = _U64.unpack_from(d, body)[0]
                pos = end
        except (_Bad, struct.error) as exc:
            if not quiet:
                self.scan.problem(f"the summary section is damaged ({exc})")
        return summary

    def _chunk_index(self, summary: _Summary, body: int, end: int) -> None:
        d = self.data
        if body + 32 + 4 > end:
            raise _Bad("a ChunkIndex record is too short")
        start, length = struct.unpack_from("<QQ", d, body + 16)
        (n,) = _U32.unpack_from(d, body + 32)
        if n % 10 or body + 36 + n > end:
            raise _Bad("a ChunkIndex's message index offsets do not fit it")
        offsets = dict(struct.unpack_from("<HQ", d, p) for p in range(body + 36, body + 36 + n, 10))
        summary.chunks[start] = (length, offsets)

    def _result(self) -> Scan:
        scan = self.scan
        if self.unattributed:
            scan.problem(
                f"{self.unattributed:,} messages are on channels whose Channel record could not "
                "be read"
            )
        found = self.c.total - self.before + self.unattributed
        claimed = self.summary.message_count if self.summary else None
        if claimed is not None:
            scan.expected, scan.source = claimed, "the file's Statistics record"
            if found + self.known_lost > claimed:  # the statistics undercount: trust the data
                scan.expected, scan.source = found + self.known_lost, "its message indexes"
        elif not self.unknown_lost:
            scan.expected = found + self.known_lost
            scan.source = "its message indexes" if self.known_lost else "a full scan"
        return scan

    def _crc(self, start: int, stop: int) -> int:
        crc = 0
        for pos in range(start, stop, _CRC_PIECE):
            crc = zlib.crc32(self.data[pos : min(pos + _CRC_PIECE, stop)], crc)
        return crc

    # --- the data section -----------------------------------------------------------------

    def _walk(self, pos: int, end: int, has_footer: bool) -> None:
        d = self.data
        seen_end = False
        while pos < end:
            if pos + 9 > end:
                self._damaged(f"{end - pos} stray bytes at byte {pos:,}")
                break
            opcode, length = _RECORD.unpack_from(d, pos)
            body, stop = pos + 9, pos + 9 + length
            try:
                if opcode == 0 or stop > end:
                    if opcode and stop > self.size and self._cut(pos, body, end):
                        return
                    raise _Bad(
                        "opcode 0 (zeroed or overwritten bytes)"
                        if opcode == 0
                        else f"a record of {length:,} bytes runs past the end of the data"
                    )
                if opcode == CHUNK:
                    stop = self._chunk(pos, body, stop, cut=False)
                elif opcode == MESSAGE:
                    self.loose = True
                    self._loose_message(d, body, stop)
                elif opcode == SCHEMA:
                    sid, value = _schema(d, body, stop)
                    self.schemas.setdefault(sid, value)
                    self.loose = True
                elif opcode == CHANNEL:
                    self._add_channel(*_channel(d, body, stop))
                    self.loose = True
                elif opcode == MESSAGE_INDEX:  # no chunk before it could be read: count them
                    _, entries = _message_index(d, body, stop)
                    if pos not in self.counted:
                        self.known_lost += len(entries)
                elif opcode == DATA_END:
                    self._data_end(body, stop, pos)
                    seen_end = True
                    pos = stop
                    break
                elif opcode == FOOTER:  # no DataEnd before it; _after_data looks at it
                    seen_end = True
                    break
            except _Bad as exc:
                pos = self._resync(pos, end, str(exc))
                continue
            pos = stop
        if not has_footer:
            self._after_data(pos, seen_end)

    def _cut(self, pos: int, body: int, end: int) -> bool:
        """Is the file cut short inside the record at `pos`? Then salvage what is before the cut.

        A record claiming more bytes than the file has is a cut only if nothing readable
        follows it; otherwise its length field is damaged and the walk resumes after it.
        """
        d, opcode = self.data, self.data[pos]
        if opcode == CHUNK:  # a chunk's two lengths agree when only the file's end is missing
            try:
                _, p = _string(d, body + 28, self.size)
                (records,) = _U64.unpack_from(d, p)
                (length,) = _U64.unpack_from(d, pos + 1)
            except (_Bad, struct.error):
                return False
            if not 0 <= body + length - (p + 8 + records) < 64:
                return False
        elif self._next_record(pos + 1, end) < end:
            return False
        text = f"the file is cut short at byte {self.size:,}, inside the record at byte {pos:,}"
        if opcode == CHUNK:
            before = self.c.total + self.unattributed
            with contextlib.suppress(_Bad, struct.error):
                self._chunk(pos, body, self.size, cut=True)
            got = self.c.total + self.unattributed - before
            text = f"{text} (a chunk; {got:,} of its messages recovered)"
        self._damaged(text)
        return True

    def _damaged(self, text: str) -> None:
        self.scan.problem(text)
        if not (self.summary and self.summary.message_count is not None):
            self.unknown_lost = True

    def _resync(self, pos: int, end: int, why: str) -> int:
        """Where the walk goes on after an unreadable record at `pos`, with the damage noted."""
        nxt = self._next_record(pos + 1, end)
        self.scan.problem(f"bytes {pos:,}-{nxt:,} do not parse ({why}); skipped")
        lost = self._indexed_chunks_between(pos, nxt)
        if lost is None and not self._orphan_indexes_at(nxt, end):
            self.unknown_lost = True
        self.known_lost += lost or 0
        return nxt

    def _next_record(self, pos: int, end: int) -> int:
        if self.summary and self.summary.chunks:  # the chunk index says where chunks start
            marks = sorted(
                {s for s in self.summary.chunks}
                | {s + n for s, (n, _) in self.summary.chunks.items()}
            )
            i = bisect_right(marks, pos - 1)
            for mark in marks[i:]:
                if mark < end and self._plausible(mark, end):
                    return mark
        while True:
            found = _DATA_OPS.search(self.data, pos, end)
            if found is None:
                return end
            if self._plausible(found.start(), end):
                return found.start()
            pos = found.start() + 1

    def _plausible(self, pos: int, end: int, depth: int = 1) -> bool:
        """Does a record start at `pos`: sane opcode and length, parsing body, a record after?"""
        d = self.data
        if pos + 9 > end:
            return False
        opcode, length = _RECORD.unpack_from(d, pos)
        body, stop = pos + 9, pos + 9 + length
        if stop > end:
            return False
        try:
            if opcode == MESSAGE:
                if length < 22 or _U16.unpack_from(d, body)[0] not in self._channel_ids():
                    return False
            elif opcode == CHUNK:
                compression, p = _string(d, body + 28, stop)
                if compression not in COMPRESSIONS or p + 8 > stop:
                    return False
                if p + 8 + _U64.unpack_from(d, p)[0] > stop:
                    return False
            elif opcode == SCHEMA:
                _schema(d, body, stop)
            elif opcode == CHANNEL:
                _channel(d, body, stop)
            elif opcode == MESSAGE_INDEX:
                _message_index(d, body, stop)
            elif opcode == DATA_END:
                if length < 4:
                    return False
            elif opcode in (ATTACHMENT, METADATA):
                if length < 8:
                    return False
            else:
                return False
        except (_Bad, struct.error):
            return False
        if stop == end or depth == 0:
            return True
        return self._plausible(stop, end, depth - 1)

    def _channel_ids(self) -> set[int]:
        ids = set(self.channels)
        if self.summary:
            ids.update(self.summary.channels)
        return ids

    def _indexed_chunks_between(self, start: int, stop: int) -> int | None:
        """Messages the summary's message indexes list for chunks starting in [start, stop)."""
        if not (self.summary and self.summary.chunks):
            return None
        total = 0
        for chunk_start, (_, offsets) in self.summary.chunks.items():
            if start <= chunk_start < stop:
                if not offsets:
                    return None
                try:
                    for offset in offsets.values():
                        _, length = _RECORD.unpack_from(self.data, offset)
                        total += len(_message_index(self.data, offset + 9, offset + 9 + length)[1])
                        self.counted.add(offset)
                except (_Bad, struct.error):
                    return None
        return total

    def _orphan_indexes_at(self, pos: int, end: int) -> bool:
        """Message indexes right after a skipped stretch count the chunk lost in it."""
        return pos + 9 <= end and self.data[pos] == MESSAGE_INDEX

    def _data_end(self, body: int, stop: int, pos: int) -> None:
        if stop - body < 4:
            raise _Bad("a DataEnd record is too short")
        (crc,) = _U32.unpack_from(self.data, body)
        # Chunks carry their own CRC; the data-section CRC is computed only when it covers
        # something they do not (messages outside chunks, chunks without a CRC).
        if crc and (self.loose or not self.chunked_crc) and self._crc(0, pos) != crc:
            self.scan.problem(
                "the data section fails its CRC: some bytes were changed, so messages may hold "
                "damaged values"
            )

    def _after_data(self, pos: int, seen_end: bool) -> None:
        """No intact footer: the file was cut short, or bytes were appended after its end."""
        d, size = self.data, self.size
        start = pos
        while seen_end and pos + 9 <= size:  # walk the summary records to find the footer
            opcode, length = _RECORD.unpack_from(d, pos)
            stop = pos + 9 + length
            if opcode == FOOTER and stop + len(MAGIC) <= size and d[stop : stop + 8] == MAGIC:
                extra = size - stop - len(MAGIC)
                self.scan.problem(f"{extra:,} bytes after the end of the MCAP file (appended?)")
                self.summary = self._read_summary(start, pos, quiet=True)
                return
            if opcode == 0 or stop > size:
                break
            pos = stop
        if seen_end:
            self.scan.problem(f"the file ends early, inside its summary section ({size:,} bytes)")
            self.summary = self._read_summary(start, size, quiet=True)
        else:
            self._damaged(f"the file ends early, before its summary ({size:,} bytes)")

    # --- channels and messages ------------------------------------------------------------

    def _add_channel(self, cid: int, value: tuple[int, str, str]) -> None:
        self.channels.setdefault(cid, value)
        self._register(cid)

    def _register(self, cid: int) -> bool:
        """Tell the collector about channel `cid`; False when nothing says what it is."""
        value = self.channels.get(cid) or (self.summary.channels.get(cid) if self.summary else None)
        if value is None:
            return False
        sid, topic, encoding = value
        schema = self.schemas.get(sid) or (self.summary.schemas.get(sid) if self.summary else None)
        name, schema_encoding, text = schema or ("", None, None)
        self.c.connection(self.base + cid, topic, name, encoding, text, schema_encoding)
        return True

    def _loose_message(self, buf, body: int, stop: int) -> None:
        if stop - body < 22:
            raise _Bad("a Message record is too short")
        cid, _, log_time, _ = _MESSAGE.unpack_from(buf, body)
        key = self.base + cid
        if key in self.c.connections or self._register(cid):
            self.c.message(key, log_time, bytes(buf[body + 22 : stop]))
        else:
            self.unattributed += 1

    # --- chunks ---------------------------------------------------------------------------

    def _chunk(self, pos: int, body: int, stop: int, cut: bool) -> int:
        """Read the chunk at `pos` and the message indexes after it; where the walk goes on."""
        d = self.data
        if stop - body < 28 + 4 + 8:
            raise _Bad("a Chunk record is too short")
        _, _, size, crc = _CHUNK.unpack_from(d, body)
        compression, p = _string(d, body + 28, stop)
        if compression not in COMPRESSIONS:
            raise _Bad(f"unknown chunk compression {compression[:20]!r}")
        (length,) = _U64.unpack_from(d, p)
        if not cut and p + 8 + length > stop:
            raise _Bad("a chunk's records run past the record")
        after, indexes = (stop, []) if cut else self._indexes_after(stop)
        listed = sum(n for _, _, n in indexes) if indexes else None
        records, why = decompress(compression, d[p + 8 : min(p + 8 + length, stop)], size)
        if why is None and len(records) != size and not cut:
            why = f"it decompresses to {len(records):,} bytes, not the {size:,} it claims"
        if why is None and not cut and crc and zlib.crc32(records) != crc:
            why = "its CRC does not match"
        self.chunked_crc = self.chunked_crc and crc != 0
        if cut:
            self._careful(records, 0, None)
            return stop
        if why is None and not crc and indexes and not self._matches_index(records, indexes):
            why = "its messages disagree with its message index (and it has no CRC)"
        before = self.c.total + self.unattributed
        if why is None:
            stopped = self._records(records, 0)
            if stopped is not None:
                why = f"a record inside it does not parse ({stopped[1]})"
                self._careful(records, stopped[0], self._entries(indexes))
        else:
            self._careful(records, 0, self._entries(indexes))
        got = self.c.total + self.unattributed - before
        lost, text = chunk_outcome(pos, got, listed, why)
        self.known_lost += lost
        if text and listed is None:  # damaged, and nothing says how many it held
            self._damaged(text)
        elif text:
            self.scan.problem(text)
        return after

    def _indexes_after(self, pos: int) -> tuple[int, list[tuple[int, int, int]]]:
        """The MessageIndex records right after a chunk, as (channel, first entry, count)."""
        d, size = self.data, self.size
        indexes = []
        while pos + 9 <= size and d[pos] == MESSAGE_INDEX:
            (length,) = _U64.unpack_from(d, pos + 1)
            stop = pos + 9 + length
            if stop > size or length < 6:
                break  # the walk reaches this record next and reports it
            (cid,) = _U16.unpack_from(d, pos + 9)
            (n,) = _U32.unpack_from(d, pos + 11)
            if n % 16 or pos + 15 + n > stop:
                break
            indexes.append((cid, pos + 15, n // 16))
            pos = stop
        return pos, indexes

    def _matches_index(self, rec: bytes, indexes) -> bool:
        """Does a message with that channel and log time start at every indexed offset?

        Without a CRC this is the only check of a chunk's messages: a flipped bit in a length,
        a channel id or a log time shows here.
        """
        d, n = self.data, len(rec)
        record, message, entry = _RECORD.unpack_from, _MESSAGE.unpack_from, _ENTRY.unpack_from
        try:
            for cid, first, count in indexes:
                for p in range(first, first + 16 * count, 16):
                    t, offset = entry(d, p)
                    opcode, length = record(rec, offset)
                    if opcode != MESSAGE or offset + 9 + length > n or length < 22:
                        return False
                    got_cid, _, got_t, _ = message(rec, offset + 9)
                    if got_cid != cid or got_t != t:
                        return False
        except struct.error:
            return False
        return True

    def _entries(self, indexes) -> dict[int, tuple[int, int]] | None:
        """{offset in the chunk: (channel, log time)} of the indexes (only for damaged chunks)."""
        if not indexes:
            return None
        entries = {}
        for cid, first, n in indexes:
            for p in range(first, first + 16 * n, 16):
                t, offset = _ENTRY.unpack_from(self.data, p)
                entries[offset] = (cid, t)
        return entries

    def _records(self, rec: bytes, pos: int) -> tuple[int, str] | None:
        """Every record of an intact chunk, fast; (position, why) where one does not parse."""
        unpack, unpack_message = _RECORD.unpack_from, _MESSAGE.unpack_from
        conns, message, base = self.c.connections, self.c.message, self.base
        n = len(rec)
        while pos < n:
            if pos + 9 > n:
                return pos, "a record header is cut short"
            opcode, length = unpack(rec, pos)
            body = pos + 9
            stop = body + length
            if stop > n:
                return pos, f"a record of {length:,} bytes runs past the chunk"
            if opcode == MESSAGE:
                if length < 22:
                    return pos, "a Message record is too short"
                cid, _, log_time, _ = unpack_message(rec, body)
                key = base + cid
                if key in conns or self._register(cid):
                    message(key, log_time, rec[body + 22 : stop])
                else:
                    self.unattributed += 1
            elif opcode == CHANNEL:
                try:
                    self._add_channel(*_channel(rec, body, stop))
                except _Bad as exc:
                    return pos, str(exc)
            elif opcode == SCHEMA:
                try:
                    sid, value = _schema(rec, body, stop)
                except _Bad as exc:
                    return pos, str(exc)
                self.schemas.setdefault(sid, value)
            elif opcode == 0:
                return pos, "opcode 0"
            pos = stop
        return None

    def _careful(self, rec: bytes, pos: int, entries: dict[int, tuple[int, int]] | None) -> None:
        """The records of a damaged chunk from `pos` on.

        With message indexes, a message lands only where the index puts one (same channel, same
        log time), so damaged bytes never become messages; Schema and Channel records are found
        by scanning. Without, every record that parses lands.
        """
        n = len(rec)
        start = pos
        landed: set[int] = set()
        while pos < n:
            if not self._plausible_inner(rec, pos, n):
                found = _CHUNK_OPS.search(rec, pos + 1)
                if found is None:
                    break
                pos = found.start()
                continue
            opcode, length = _RECORD.unpack_from(rec, pos)
            stop = pos + 9 + length
            if opcode == MESSAGE:
                indexed = pos in (entries if entries is not None else self._known(rec, pos))
                if indexed and self._indexed_message(rec, pos, entries):
                    landed.add(pos)
            elif opcode == CHANNEL:
                self._add_channel(*_channel(rec, pos + 9, stop))
            else:
                sid, value = _schema(rec, pos + 9, stop)
                self.schemas.setdefault(sid, value)
            pos = stop
        for offset in sorted(entries or ()):
            if start <= offset < n and offset not in landed:
                self._indexed_message(rec, offset, entries)

    def _known(self, rec: bytes, pos: int) -> tuple[int, ...]:
        """(pos,) when the message at `pos` is on a channel we know: garbage rarely is."""
        (cid,) = _U16.unpack_from(rec, pos + 9)
        return (pos,) if cid in self.channels or cid in self._channel_ids() else ()

    def _plausible_inner(self, rec: bytes, pos: int, n: int) -> bool:
        if pos + 9 > n:
            return False
        opcode, length = _RECORD.unpack_from(rec, pos)
        stop = pos + 9 + length
        if stop > n or opcode not in (SCHEMA, CHANNEL, MESSAGE):
            return False
        try:
            if opcode == MESSAGE:
                return length >= 22
            (_schema if opcode == SCHEMA else _channel)(rec, pos + 9, stop)
        except (_Bad, struct.error):
            return False
        return True

    def _indexed_message(self, rec: bytes, pos: int, entries) -> bool:
        """Land the message at `pos` if it parses (and matches its index entry, when indexed)."""
        if pos + 9 + 22 > len(rec):
            return False
        opcode, length = _RECORD.unpack_from(rec, pos)
        stop = pos + 9 + length
        if opcode != MESSAGE or length < 22 or stop > len(rec):
            return False
        cid, _, log_time, _ = _MESSAGE.unpack_from(rec, pos + 9)
        if entries is not None and entries.get(pos) != (cid, log_time):
            return False
        key = self.base + cid
        if key in self.c.connections or self._register(cid):
            self.c.message(key, log_time, rec[pos + 31 : stop])
        else:
            self.unattributed += 1
        return True
