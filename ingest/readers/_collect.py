"""What every container reader feeds: `_Collector` counts each message and decodes, in batches,
the topics that map to a kind; `Scan` is what the reader learned about the file itself (what it
should hold, what is damaged). `_Collector.finish` turns both into a `DecodedLog`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from flywheel.errors import InputError
from ingest.extract import (
    DEFAULT_KINDS,
    TopicColumns,
    _Failures,
    build_tables,
    generic_decoder,
    normalize_msgtype,
    shape_of,
)

BATCH = 20_000  # messages decoded at once: bounds memory, keeps numpy work vectorised
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
    """Everything ingest needs from one log file (see docs/ingest.md for the columns).

    `complete` is False when part of the file could not be read; `truncated` then says what
    was lost and where, and `expected_messages` is what the file's own index, statistics or
    metadata list (None when nothing says). `tables` maps each topic whose rows went into a
    table to that table.
    """

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
    expected_messages: int | None = None
    complete: bool = True
    tables: dict[str, str] = field(default_factory=dict)


@dataclass
class Scan:
    """What a reader learned about a file besides its messages.

    `expected` is the message count the file claims (statistics, indexes, metadata), None when
    nothing in it says; `source` names where it came from. `problems` lists the damage found,
    one line each, in file order; any problem makes the log incomplete.
    """

    expected: int | None = None
    source: str = "a full scan"
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        elif len(self.problems) == MAX_PROBLEMS:
            self.problems.append("more damage after that (not listed)")


MAX_PROBLEMS = 20  # a shredded file would otherwise give a reason of megabytes


def chunk_outcome(
    pos: int, got: int, listed: int | None, why: str | None
) -> tuple[int, str | None]:
    """What reading the chunk at byte `pos` says, for every container alike: (messages known
    lost, the problem line or None). `got` messages landed, its index lists `listed` (None:
    not recorded), `why` is the damage found (None: the chunk read whole)."""
    at = f"the chunk at byte {pos:,}"
    if why is None:
        if listed is not None and got < listed:
            return listed - got, f"{at} holds {got:,} messages, its index lists {listed:,}"
        return 0, None
    if listed is not None:
        lost = max(listed - got, 0)
        return lost, f"{at} is damaged ({why}): {got:,} of its {listed:,} messages recovered"
    return (
        0,
        f"{at} is damaged ({why}): {got:,} messages recovered, how many it held is not recorded",
    )


MAX_TIME = 2**63 - 1  # log times are int64 ns in the lake


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
        self.bad_times = 0

    def _kind(self, topic: str, msgtype: str) -> str | None:
        default = DEFAULT_KINDS.get(msgtype)
        for name in (topic, "/" + topic.lstrip("/"), topic.lstrip("/")):
            if name in self.topic_map:
                kind = self.topic_map[name]
                if default is None or kind in (default, "ignore"):
                    return kind
                # a recognised type read as another kind gives only NaN: refuse, and say so
                self.warnings.append(
                    f"--topic-map {name}={kind} refused: {topic} is {msgtype}, which is "
                    f"{default} data; it was read as {default}"
                )
                return default
        return default

    def connection(self, key, topic, msgtype, encoding, definition=None, def_encoding=None):
        if key in self.connections:  # a repeated Channel/connection record: keep the first
            return
        msgtype = normalize_msgtype(msgtype or "")
        known = self.info.get(topic)
        kind = known[2] if known else self._kind(topic, msgtype)
        if isinstance(definition, bytes):
            definition = definition.decode("utf-8", "replace")
        self.connections[key] = _Connection(
            topic, msgtype, encoding, definition or None, def_encoding, kind
        )
        self.counts.setdefault(topic, 0)
        self.info.setdefault(topic, (msgtype, encoding, kind))

    def message(self, key, log_time_ns: int, data: bytes) -> None:
        if log_time_ns > MAX_TIME:  # a u64 past int64 (the year 2262): a damaged time field
            self.bad_times += 1
            return
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

    def finish(self, fmt: str, scan: Scan) -> DecodedLog:
        """The decoded log; an InputError when the file is damaged and nothing of it landed."""
        if self.bad_times:
            scan.problem(f"{self.bad_times:,} messages have an impossible log time; not landed")
        reason = _damage(self.total, scan)
        if reason and not self.total:
            raise InputError(
                f"{self.path}: {reason}; nothing could be salvaged: copy it again from the "
                "recorder",
                path=str(self.path),
            )
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
        self._unmatched_map_warnings()
        used: dict[str, str] = {}
        tables = build_tables(columns, self.warnings, used)
        topics = [
            TopicInfo(t, self.info[t][0], self.info[t][1], n, kinds.get(t))
            for t, n in self.counts.items()
        ]
        if not self.total and reason is None:
            self.warnings.append("the log holds no messages")
        complete = reason is None
        return DecodedLog(
            format=fmt,
            message_count=self.total,
            start_ns=int(self.start or 0),
            end_ns=int(self.end or 0),
            topics=topics,
            warnings=self.warnings,
            truncated=reason,
            expected_messages=self.total if complete else scan.expected,
            complete=complete,
            tables=used,
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

    def _unmatched_map_warnings(self) -> None:
        names = {v for t in self.info for v in (t, "/" + t.lstrip("/"), t.lstrip("/"))}
        for topic, kind in self.topic_map.items():
            if topic not in names:
                self.warnings.append(
                    f"--topic-map {topic}={kind} matched nothing: this log has no topic {topic}"
                )


def _damage(landed: int, scan: Scan) -> str | None:
    """The reason line for the quarantine table, or None when every listed message landed."""
    problems = list(scan.problems)
    if scan.expected is not None and landed < scan.expected and not problems:
        problems.append(f"{scan.source} lists {scan.expected:,} messages, the file holds fewer")
    if not problems:
        return None
    if scan.expected is None:
        head = (
            f"damaged: {landed:,} messages landed; how many were lost is unknown "
            "(nothing in the file counts the damaged part)"
        )
    else:
        lost = max(scan.expected - landed, 0)
        head = f"damaged: {landed:,} of {scan.expected:,} messages landed ({lost:,} lost"
        head += f"; the count is from {scan.source})"
    return f"{head}: {'; '.join(problems)}"


def _bulk_decoder(msgtype: str, encoding: str, definition: str | None) -> Callable | None:
    """ingest.decode's fast path when it exists for this type."""
    from ingest import decode

    function = decode.bulk_decoder(msgtype, encoding, definition)
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
