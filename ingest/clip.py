"""Clips: the original messages of a scene's time window, from its source log, as one MCAP file.

`export_clip` finds the scene in the lake, opens the file its log's ``logs.source_uri`` names and
writes every message with ``start_ns - pad <= log_time < end_ns + pad`` (docs/contract.md §10) to
an MCAP file (chunked, zstd, with summary, message indexes and statistics), each with its
original log_time, publish_time, sequence and payload bytes, on a channel with the source's
topic, message encoding and metadata and a schema with the source's name, encoding and data:

- MCAP (any profile, bare or the storage of a rosbag2 folder): read through the mcap library's
  index (`iter_messages(starting_at=start, ending_before=end)`, [start, end)): only the chunks
  that overlap the window are read. The clip keeps the source's profile.
- ROS 1 ``.bag``: read through the `rosbags` bag reader, which uses the bag's chunk index; the
  clip has profile ``ros1``, ``ros1msg`` schemas holding the bag's own message definitions
  (the connection headers' ``message_definition``), message encoding ``ros1``, channel metadata
  ``md5sum`` (and ``callerid``/``latching`` where the bag has them). A bag stores one time per
  message: it is both log_time and publish_time.
- ROS 2 ``.db3`` (bare or in a rosbag2 folder): rows by the ``timestamp`` index of ``messages``;
  profile ``ros2``, message encoding the topic's ``serialization_format`` (``cdr``), channel
  metadata ``offered_qos_profiles`` (and ``topic_type_hash``) from the ``topics`` table, schemas
  from its ``message_definitions`` table; where the file has no definition text, the one the
  `rosbags` typestore gives (as ingest decodes such files, `ingest.extract`), else an empty
  schema and a note. publish_time is the row's timestamp (the only one a ``.db3`` keeps).

The file is written through `flywheel.output.atomic_output`: a failure leaves no half file and
an existing file is replaced whole.

>>> summary = export_clip(lake, scene, tmp / "clip.mcap", pad_s=1.0)
>>> summary.messages == sum(summary.topics.values()) > 0, summary.profile
(True, 'ros2')
"""

from __future__ import annotations

import heapq
import math
import os
import re
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from flywheel.errors import InputError, UsageError
from flywheel.lake import Lake, resolve
from flywheel.output import atomic_output, check_output

# scene ids are `<log_id>-<n>`; anything else is refused before it reaches a query
SCENE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")
LIBRARY = "flywheel export clip"
MCAP_SCHEMA_ENCODINGS = {"ros2msg": "ros2msg", "ros2idl": "ros2idl"}

# (topic, message encoding, (schema name, schema encoding, schema data) or None, metadata)
ChannelKey = tuple[str, str, tuple[str, str, bytes] | None, tuple[tuple[str, str], ...]]
# (log_time, publish_time, sequence, channel, data)
Item = tuple[int, int, int, ChannelKey, bytes]


@dataclass
class ClipSummary:
    """What `export_clip` wrote: the scene, the source, the file, the window and the counts.

    `start_ns`/`end_ns` is the window the clip holds (`start_ns <= log_time < end_ns`): the
    scene's, widened by `pad_s` on each side. `bytes` is the size of the written file.
    """

    scene_id: str
    source_uri: str
    out: str
    start_ns: int
    end_ns: int
    messages: int
    topics: dict[str, int]
    bytes: int = 0
    pad_s: float = 0.0
    profile: str = ""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scene_id": self.scene_id,
            "source_uri": self.source_uri,
            "out": self.out,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "pad_s": self.pad_s,
            "messages": self.messages,
            "bytes": self.bytes,
            "profile": self.profile,
            "topics": dict(self.topics),
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        seconds = (self.end_ns - self.start_ns) / 1e9
        per_topic = ", ".join(f"{t} {n:,}" for t, n in self.topics.items()) or "no messages"
        return (
            f"clip of scene {self.scene_id}: {self.messages:,} messages ({per_topic}), "
            f"{self.bytes:,} bytes, window [{self.start_ns}, {self.end_ns}) ({seconds:.3f} s) "
            f"from {self.source_uri} to {self.out}"
        )


# --- the lake side ----------------------------------------------------------------------------


def export_clip(
    lake: str | os.PathLike | Lake | None,
    scene_id: str,
    out: str | os.PathLike,
    topics: Iterable[str] | None = None,
    pad_s: float = 0.0,
) -> ClipSummary:
    """Write the messages of scene `scene_id`'s window (widened by `pad_s` seconds on each side)
    from its source log to the MCAP file `out`; `topics` keeps only those topics.

    Raises UsageError (exit 2) for a malformed or unknown scene id, a bad pad or `out`, or a
    topic the source does not have; InputError (exit 1) when the source file is gone.
    """
    if not isinstance(scene_id, str) or not SCENE_ID.fullmatch(scene_id):
        raise UsageError(
            f"unknown scene id {scene_id!r}: scene ids look like 'LOGID-00003' "
            "(flywheel mine sql 'SELECT scene_id FROM scenes' lists them)"
        )
    if not isinstance(pad_s, int | float) or not math.isfinite(pad_s) or pad_s < 0:
        raise UsageError(f"--pad must be a number of seconds >= 0, not {pad_s!r}")
    wanted = parse_topics(topics)
    check_output(out)
    where = resolve(lake)
    with where.connect(snapshot=where.snapshot(["logs", "scenes"])) as con:
        row = con.execute(
            "SELECT s.start_ns, s.end_ns, l.source_uri FROM scenes s JOIN logs l USING (log_id) "
            "WHERE s.scene_id = ? LIMIT 1",
            [scene_id],
        ).fetchone()
    if row is None:
        raise UsageError(
            f"unknown scene id {scene_id!r}: no such scene in the lake {where.location()} "
            "(flywheel mine sql 'SELECT scene_id FROM scenes' lists them)"
        )
    start_ns, end_ns, uri = int(row[0]), int(row[1]), str(row[2])
    source = source_path(uri)
    if not (source.exists() or source.is_symlink()):
        raise InputError(
            f"the source log of scene {scene_id}, {source}, is missing (moved or deleted since "
            "it was ingested); put it back at that path to export the clip",
            path=str(source),
        )
    pad = round(pad_s * 1e9)
    summary = write_clip(source, out, max(start_ns - pad, 0), end_ns + pad, wanted)
    summary.scene_id, summary.source_uri, summary.pad_s = scene_id, uri, float(pad_s)
    return summary


def parse_topics(topics: Iterable[str] | str | None) -> list[str] | None:
    """`--topics` values (each may be a comma-separated list) as one list; None: every topic.

    >>> parse_topics(["/a,/b", "/c", "/a"])
    ['/a', '/b', '/c']
    """
    if topics is None:
        return None
    if isinstance(topics, str):
        topics = [topics]
    found: list[str] = []
    for value in topics:
        for name in str(value).split(","):
            name = name.strip()
            if name and name not in found:
                found.append(name)
    return found or None


def source_path(uri: str) -> Path:
    """The local path a `logs.source_uri` names (``file://…``, or a bare path)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path) if parsed.scheme else uri)
    raise InputError(f"the source {uri} is not a local file; only local sources are clipped")


# --- the file side ----------------------------------------------------------------------------


def write_clip(
    source: str | os.PathLike,
    out: str | os.PathLike,
    start_ns: int,
    end_ns: int,
    topics: Sequence[str] | None = None,
) -> ClipSummary:
    """Write the messages of the log at `source` with ``start_ns <= log_time < end_ns`` (only
    `topics`, when given) to the MCAP file `out`, atomically. The summary's scene is empty."""
    from mcap.writer import CompressionType, Writer

    path = Path(source)
    if path.name == "metadata.yaml":
        path = path.parent
    wanted = list(topics) if topics else None
    target = check_output(out).resolve()
    if target == path.resolve() or path.resolve() in target.parents:
        raise UsageError(f"--out {target} is the source log itself; give another path")
    notes: list[str] = []
    with ExitStack() as stack:
        profile, known, items = _open(path, stack, start_ns, end_ns, wanted, notes)
        if wanted and known is not None:
            missing = [t for t in wanted if t not in known]
            if missing:
                raise UsageError(
                    f"--topics: {', '.join(missing)} not in {path}; its topics: "
                    f"{', '.join(sorted(known)) or 'none'}"
                )
        counts: dict[str, int] = {}
        with atomic_output(out) as temp, open(temp, "wb") as stream:
            writer = Writer(stream, compression=CompressionType.ZSTD)
            writer.start(profile=profile, library=LIBRARY)
            schemas: dict[tuple[str, str, bytes], int] = {}
            channels: dict[ChannelKey, int] = {}
            total = 0
            for log_time, publish_time, sequence, key, data in items:
                cid = channels.get(key)
                if cid is None:
                    cid = _channel(writer, key, schemas)
                    channels[key] = cid
                    counts.setdefault(key[0], 0)
                writer.add_message(cid, log_time, data, publish_time, sequence)
                counts[key[0]] += 1
                total += 1
            writer.finish()
        size = Path(out).stat().st_size
    return ClipSummary(
        scene_id="",
        source_uri=path.absolute().as_uri(),
        out=str(Path(out).absolute()),
        start_ns=start_ns,
        end_ns=end_ns,
        messages=total,
        topics=dict(sorted(counts.items())),
        bytes=size,
        profile=profile,
        notes=notes,
    )


def _channel(writer, key: ChannelKey, schemas: dict) -> int:
    topic, encoding, schema, metadata = key
    sid = 0
    if schema is not None:
        sid = schemas.get(schema, 0)
        if not sid:
            name, schema_encoding, data = schema
            sid = writer.register_schema(name, schema_encoding, data)
            schemas[schema] = sid
    return writer.register_channel(topic, encoding, sid, dict(metadata))


def _open(
    path: Path, stack: ExitStack, start: int, end: int, topics: list[str] | None, notes: list[str]
) -> tuple[str, set[str] | None, Iterator[Item]]:
    """(profile, the source's topics or None when unknown, the messages in the window)."""
    from ingest.readers import mcap as mcap_reader
    from ingest.readers import ros1, rosbag2
    from ingest.readers._io import head

    if path.is_dir():
        if not (path / rosbag2.METADATA).is_file():
            raise InputError(f"{path}: a folder without metadata.yaml is not a rosbag2 folder")
        return _folder(path, stack, start, end, topics, notes)
    start_bytes = head(path)  # a FIFO or a device is refused, as ingest refuses it
    if start_bytes.startswith(mcap_reader.MAGIC):
        profile, known, items = _mcap(path, stack, start, end, topics)
        return profile, known, items
    if start_bytes.startswith(ros1.MAGIC):
        return "ros1", *_bag(path, stack, start, end, topics)
    if start_bytes.startswith(rosbag2.SQLITE_MAGIC):
        return "ros2", *_db3(path, stack, start, end, topics, False, notes)
    raise InputError(
        f"{path}: not a log this command clips (MCAP, ROS 1 .bag, ROS 2 .db3 or rosbag2 folder)",
        path=str(path),
    )


def _failing(path: Path, items: Iterator[Item]) -> Iterator[Item]:
    """`items`, with a reader's failure turned into an InputError naming the file."""
    try:
        yield from items
    except (OSError, sqlite3.Error, ValueError, KeyError, EOFError) as exc:
        raise InputError(f"{path}: the source cannot be read ({exc})", path=str(path)) from exc
    except Exception as exc:  # the mcap and rosbags readers' own errors
        if type(exc).__module__.split(".")[0] in ("mcap", "rosbags", "zstandard", "lz4"):
            raise InputError(f"{path}: the source cannot be read ({exc})", path=str(path)) from exc
        raise


# --- MCAP -------------------------------------------------------------------------------------


def _mcap(
    path: Path, stack: ExitStack, start: int, end: int, topics: list[str] | None
) -> tuple[str, set[str] | None, Iterator[Item]]:
    from mcap.reader import make_reader

    try:
        stream = stack.enter_context(path.open("rb"))
        reader = make_reader(stream)
        profile = reader.get_header().profile
        summary = reader.get_summary()
    except Exception as exc:
        raise InputError(f"{path}: the MCAP file cannot be read ({exc})", path=str(path)) from exc
    known = {c.topic for c in summary.channels.values()} if summary else None
    keys: dict[int, ChannelKey] = {}

    def items() -> Iterator[Item]:
        # [start, end): starting_at is inclusive, ending_before exclusive (start_time/end_time,
        # the same bounds, are deprecated in mcap 1.6)
        found = reader.iter_messages(topics=topics, starting_at=start, ending_before=end)
        for schema, channel, message in found:
            key = keys.get(channel.id)
            if key is None:
                key = keys[channel.id] = (
                    channel.topic,
                    channel.message_encoding,
                    None if schema is None else (schema.name, schema.encoding, bytes(schema.data)),
                    tuple(sorted(channel.metadata.items())),
                )
            yield message.log_time, message.publish_time, message.sequence, key, message.data

    return profile, known, _failing(path, items())


# --- ROS 1 ------------------------------------------------------------------------------------


def _bag(
    path: Path, stack: ExitStack, start: int, end: int, topics: list[str] | None
) -> tuple[set[str], Iterator[Item]]:
    from rosbags.rosbag1 import Reader

    try:
        reader = stack.enter_context(Reader(path))
    except Exception as exc:
        raise InputError(f"{path}: the ROS 1 bag cannot be read ({exc})", path=str(path)) from exc
    known = {c.topic for c in reader.connections}
    chosen = [c for c in reader.connections if topics is None or c.topic in topics]
    keys: dict[int, ChannelKey] = {}
    for conn in chosen:
        metadata = {"md5sum": conn.digest}
        callerid = getattr(conn.ext, "callerid", None)
        latching = getattr(conn.ext, "latching", None)
        if callerid:
            metadata["callerid"] = str(callerid)
        if latching is not None:
            metadata["latching"] = str(int(latching))
        definition = conn.msgdef.data if conn.msgdef is not None else ""
        keys[conn.id] = (
            conn.topic,
            "ros1",
            (conn.msgtype.replace("/msg/", "/"), "ros1msg", definition.encode("utf-8")),
            tuple(sorted(metadata.items())),
        )

    def items() -> Iterator[Item]:
        if not chosen:
            return
        for conn, timestamp, data in reader.messages(connections=chosen, start=start, stop=end):
            yield timestamp, timestamp, 0, keys[conn.id], bytes(data)

    return known, _failing(path, items())


# --- ROS 2 ------------------------------------------------------------------------------------


def _db3(
    path: Path,
    stack: ExitStack,
    start: int,
    end: int,
    topics: list[str] | None,
    per_message: bool,
    notes: list[str],
) -> tuple[set[str], Iterator[Item]]:
    from ingest.readers.rosbag2 import _connect

    con = stack.enter_context(_connect(path))
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        cursor = con.execute("SELECT * FROM topics")
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
        definitions: dict[str, tuple[str, str]] = {}
        if "message_definitions" in tables:
            query = (
                "SELECT topic_type, encoding, encoded_message_definition FROM message_definitions"
            )
            for msgtype, encoding, text in con.execute(query):
                definitions[msgtype] = (encoding or "", text or "")
    except sqlite3.Error as exc:
        raise InputError(f"{path}: the .db3 file cannot be read ({exc})", path=str(path)) from exc
    keys: dict[int, ChannelKey] = {}
    known = set()
    for row in rows:
        topic, msgtype = str(row.get("name") or ""), str(row.get("type") or "")
        known.add(topic)
        if topics is not None and topic not in topics:
            continue
        encoding, text = definitions.get(msgtype, ("", ""))
        if not text.strip():
            encoding, found = "ros2msg", _typestore_definition(msgtype)
            if found is None:
                notes.append(
                    f"{topic}: {path.name} holds no definition of {msgtype} and the typestore "
                    "does not know it; its schema in the clip is empty"
                )
            text = found or ""
        metadata = {}
        if row.get("offered_qos_profiles"):
            metadata["offered_qos_profiles"] = str(row["offered_qos_profiles"])
        if row.get("type_description_hash"):
            metadata["topic_type_hash"] = str(row["type_description_hash"])
        keys[int(row["id"])] = (
            topic,
            str(row.get("serialization_format") or "cdr"),
            (msgtype, MCAP_SCHEMA_ENCODINGS.get(encoding, "ros2msg"), text.encode("utf-8")),
            tuple(sorted(metadata.items())),
        )
    decompress = _payload_decompressor() if per_message else None

    def items() -> Iterator[Item]:
        if not keys:
            return
        ids = sorted(keys)
        marks = ", ".join("?" * len(ids))
        # the timestamp index (rosbag2 always writes one) keeps this to the window's rows
        query = (
            "SELECT topic_id, timestamp, data FROM messages WHERE timestamp >= ? AND "
            f"timestamp < ? AND topic_id IN ({marks}) ORDER BY timestamp, id"
        )
        for tid, t_ns, data in con.execute(query, [start, end, *ids]):
            data = bytes(data)
            if decompress is not None:
                data = decompress(data)
            yield t_ns, t_ns, 0, keys[tid], data

    return known, _failing(path, items())


def _typestore_definition(msgtype: str) -> str | None:
    """The ros2msg text of `msgtype` from the typestore ingest decodes such files with; None
    when the typestore does not know the type."""
    from ingest.extract import _typestore

    store = _typestore(msgtype, "cdr", None, None)
    if store is None:
        return None
    text, _ = store.generate_msgdef(msgtype, ros_version=2)
    return text


def _payload_decompressor():
    import zstandard

    inner = zstandard.ZstdDecompressor()
    return lambda data: inner.decompress(data, max_output_size=1 << 30)


def _folder(
    path: Path, stack: ExitStack, start: int, end: int, topics: list[str] | None, notes: list[str]
) -> tuple[str, set[str] | None, Iterator[Item]]:
    """Every storage file of a rosbag2 folder, merged in log-time order (profile ros2)."""
    from ingest.readers import rosbag2

    meta = rosbag2._yaml((path / rosbag2.METADATA).read_text("utf-8", "replace")) or {}
    listed = [Path(str(p)).name for p in meta.get("relative_file_paths") or ()]
    others = sorted(
        p.name
        for p in path.iterdir()
        if p.name.endswith(rosbag2.STORAGE_SUFFIXES) and p.name not in listed and p.is_file()
    )
    per_message = str(meta.get("compression_mode", "")).lower() == "message"
    known: set[str] | None = set()
    streams: list[Iterator[Item]] = []
    for name in listed + others:
        file = path / name
        if not file.is_file():
            raise InputError(
                f"{file}, listed in {path / rosbag2.METADATA}, is missing", path=str(file)
            )
        if name.endswith(".zstd"):
            file = _decompressed(file, stack)
        if file.name.endswith(".mcap"):
            _, file_topics, items = _mcap(file, stack, start, end, topics)
        else:
            file_topics, items = _db3(file, stack, start, end, topics, per_message, notes)
        known = None if known is None or file_topics is None else known | file_topics
        streams.append(items)
    return "ros2", known, heapq.merge(*streams, key=lambda item: item[0])


def _decompressed(path: Path, stack: ExitStack) -> Path:
    """A storage file compressed whole (compression_mode: file), decompressed to a temp folder."""
    from ingest.readers._io import decompress, mapped

    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flywheel-clip-")))
    with mapped(path) as data:
        raw, why = decompress("zstd", bytes(data), None)
    if why:
        raise InputError(f"{path}: the zstd compression is damaged ({why})", path=str(path))
    plain = folder / path.name.removesuffix(".zstd")
    plain.write_bytes(raw)
    return plain


__all__ = ["ClipSummary", "export_clip", "parse_topics", "source_path", "write_clip"]
