"""Read a drive log of any supported container into decoded tables: one reader per format.

MCAP (ROS 2 CDR, ROS 1, JSON) in `mcap`, ROS 1 ``.bag`` in `ros1`, ROS 2 ``.db3`` and rosbag2
folders in `rosbag2`. Each reader walks its container itself, treating every length, offset and
checksum as a claim to check: a damaged chunk, page or record costs only itself, and the reader
says what the file claims to hold so the loss is counted. Every reader feeds the same
`_Collector` (count every message, batch and decode the topics that map to a kind);
`ingest.extract` then builds the tables. Sources are only read: files are memory-mapped
read-only, sqlite is opened immutable, nothing is written beside them.

>>> log = read_log(log_file)
>>> log.message_count, log.complete, log.ego.num_rows
(630, True, 300)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from flywheel.errors import InputError
from ingest.extract import DEFAULT_KINDS, KINDS
from ingest.readers import mcap, ros1, rosbag2
from ingest.readers._collect import DecodedLog, TopicInfo, _Collector
from ingest.readers._io import head, mapped

EXPECTED = "an MCAP file, a ROS 1 .bag, a ROS 2 .db3 or a rosbag2 folder with metadata.yaml"


def read_log(path: str | Path, topic_map: Mapping[str, str] | None = None) -> DecodedLog:
    """Read an MCAP, ROS 1 bag, ROS 2 .db3 or rosbag2 folder into tables.

    `topic_map` maps a topic name to a kind (one of KINDS) and overrides recognition by type.
    A damaged file gives what could be read, with `complete` False and the loss in `truncated`.

    >>> read_log(log_file, topic_map={"/gnss/fix": "ignore"}).gnss is None
    True
    """
    path = Path(path)
    for topic, kind in (topic_map or {}).items():
        if kind not in KINDS:
            raise InputError(
                f"topic map entry {topic!r}: unknown kind {kind!r}; use one of {', '.join(KINDS)}",
                path=str(path),
            )
    if path.name == rosbag2.METADATA:
        path = path.parent
    collector = _Collector(path, topic_map)
    if path.is_dir():
        if not (path / rosbag2.METADATA).is_file():
            raise InputError(
                f"{path}: a folder without metadata.yaml is not a rosbag2 folder; "
                f"pass the log files inside it instead (expected {EXPECTED})",
                path=str(path),
            )
        return collector.finish("rosbag2", rosbag2.read_folder(path, collector))
    start = head(path)
    if not start:
        raise InputError(
            f"{path}: the file is empty (0 bytes), expected {EXPECTED}; "
            "copy it again from the recorder",
            path=str(path),
        )
    if start.startswith(mcap.MAGIC):
        with mapped(path) as data:
            scan = mcap.read_mcap(data, collector)
        return collector.finish("mcap", scan)
    if start.startswith(ros1.MAGIC):
        with mapped(path) as data:
            scan = ros1.read_bag(data, collector)
        return collector.finish("ros1bag", scan)
    if start.startswith(rosbag2.SQLITE_MAGIC):
        return collector.finish("rosbag2", rosbag2.read_db3(path, collector))
    if start.startswith(b"#ROSBAG V"):
        version = start[1:12].decode("ascii", "replace")
        raise InputError(
            f"{path}: {version} bags are not supported (only V2.0); "
            "migrate it with `rosbag fix` or convert it with rosbags-convert",
            path=str(path),
        )
    raise InputError(
        f"{path}: not a log (it starts with {_describe(start)}); expected {EXPECTED}. "
        "Check that the right file was given, or exclude it from the ingest",
        path=str(path),
    )


def _describe(start: bytes) -> str:
    try:
        text = start.decode("utf-8")
    except UnicodeDecodeError:
        return f"the bytes {start[:8].hex(' ')}"
    return f"the text {text[:12]!r}" if text.isprintable() or "\n" in text else repr(start[:8])


__all__ = ["DEFAULT_KINDS", "KINDS", "DecodedLog", "TopicInfo", "read_log"]
