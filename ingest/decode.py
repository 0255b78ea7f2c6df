"""Bulk decoding of fixed-layout ROS messages (CDR and ROS 1) into numpy columns.

Decoding message by message in Python (mcap-ros2-support, rosbags) costs tens of microseconds a
message and dominates ingest. Here one batch of a topic is joined into one byte buffer and every
field is read for all messages at once: one cursor per message lives in a numpy array, and each
field read aligns, bounds-checks, gathers and advances all cursors together. Only the fields
the lake needs are gathered; the rest (covariances, nested poses) are skipped by moving the
cursors. Variable parts (strings, the detections of a Detection3DArray) only move cursors by
different amounts, so no Python code runs per message or per detection.

>>> import struct
>>> body = struct.pack("<iII5s7x7d", 1, 500, 5, b"odom", 1.0, 2.0, 0, 0, 0, 0, 1)  # 7x: align
>>> columns = bulk_decoder("geometry_msgs/msg/PoseStamped", "cdr")([b"\\0\\1\\0\\0" + body])
>>> columns["stamp_ns"].tolist(), columns["frame_id"].tolist(), columns["px"].tolist()
([1000000500], ['odom'], [1.0])
>>> bulk_decoder("std_msgs/msg/String", "cdr") is None
True
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from flywheel.errors import InputError
from ingest import msg as grammar

BatchDecoder = Callable[[Sequence[bytes]], dict[str, np.ndarray]]


class DecodeError(InputError):
    """A message of a batch does not parse as the type it claims to be (truncated, malformed).

    Attributes: `msgtype`, `index` (position of the first bad message in the batch). A caller
    can decode the batch with a generic decoder to keep the good messages.
    """


# --- the layouts the fast path assumes ---------------------------------------------------------
# ROS 2 Humble+ definitions (constants and comments left out: they do not change the bytes).
# A `definition` embedded in a log is compared with these after flattening both, see _layout().
_ROS2_MSGS: dict[str, str] = {
    "builtin_interfaces/Time": "int32 sec\nuint32 nanosec",
    "std_msgs/Header": "builtin_interfaces/Time stamp\nstring frame_id",
    "geometry_msgs/Point": "float64 x\nfloat64 y\nfloat64 z",
    "geometry_msgs/Vector3": "float64 x\nfloat64 y\nfloat64 z",
    "geometry_msgs/Quaternion": "float64 x 0\nfloat64 y 0\nfloat64 z 0\nfloat64 w 1",
    "geometry_msgs/Pose": "Point position\nQuaternion orientation",
    "geometry_msgs/PoseWithCovariance": "Pose pose\nfloat64[36] covariance",
    "geometry_msgs/Twist": "Vector3 linear\nVector3 angular",
    "geometry_msgs/TwistWithCovariance": "Twist twist\nfloat64[36] covariance",
    "geometry_msgs/PoseStamped": "std_msgs/Header header\nPose pose",
    "nav_msgs/Odometry": (
        "std_msgs/Header header\nstring child_frame_id\n"
        "geometry_msgs/PoseWithCovariance pose\ngeometry_msgs/TwistWithCovariance twist"
    ),
    "sensor_msgs/NavSatStatus": "int8 status\nuint16 service",
    "sensor_msgs/NavSatFix": (
        "std_msgs/Header header\nNavSatStatus status\nfloat64 latitude\nfloat64 longitude\n"
        "float64 altitude\nfloat64[9] position_covariance\nuint8 position_covariance_type"
    ),
    "sensor_msgs/Imu": (
        "std_msgs/Header header\ngeometry_msgs/Quaternion orientation\n"
        "float64[9] orientation_covariance\ngeometry_msgs/Vector3 angular_velocity\n"
        "float64[9] angular_velocity_covariance\ngeometry_msgs/Vector3 linear_acceleration\n"
        "float64[9] linear_acceleration_covariance"
    ),
    "vision_msgs/Detection3DArray": "std_msgs/Header header\nDetection3D[] detections",
    "vision_msgs/Detection3D": (
        "std_msgs/Header header\nObjectHypothesisWithPose[] results\nBoundingBox3D bbox\nstring id"
    ),
    "vision_msgs/ObjectHypothesisWithPose": (
        "ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose"
    ),
    "vision_msgs/ObjectHypothesis": "string class_id\nfloat64 score",
    "vision_msgs/BoundingBox3D": "geometry_msgs/Pose center\ngeometry_msgs/Vector3 size",
}
# ROS 1 differs only in the Header (a sequence number and a `time` primitive).
_ROS1_MSGS = {**_ROS2_MSGS, "std_msgs/Header": "uint32 seq\ntime stamp\nstring frame_id"}
del _ROS1_MSGS["builtin_interfaces/Time"]


# --- schema text -> flattened layout (the grammar is ingest.msg's) ---------------------------
def _layout(msgtype: str, text: str) -> tuple[tuple[str, str], ...] | None:
    """Flatten a schema into ((path, primitive type), ...); None if it cannot be resolved."""
    msgs = grammar.split(msgtype, text)
    msgs.setdefault("builtin_interfaces/Time", _ROS2_MSGS["builtin_interfaces/Time"])
    out: list[tuple[str, str]] = []

    def walk(name: str, prefix: str, depth: int) -> bool:
        if name not in msgs or depth > 16:
            return False
        for ftype, fname in grammar.fields(msgs[name]):
            dep = grammar.resolve(ftype, name, msgs)
            suffix = ftype[ftype.index("[") :] if "[" in ftype else ""
            if dep is None:
                out.append((prefix + fname, re.sub(r"<=\d+", "", ftype.split("[")[0]) + suffix))
            else:
                out.append((prefix + fname, "msg" + suffix))
                if not walk(dep, f"{prefix}{fname}{suffix}.", depth + 1):
                    return False
        return True

    return tuple(out) if walk(grammar.short(msgtype), "", 0) else None


# --- the vectorised reader ---------------------------------------------------------------------
class _Cursors:
    """One read position per message (or per detection) over one concatenated buffer."""

    __slots__ = ("base", "buf", "cdr", "end", "msgtype", "order", "pos", "rows", "views")

    def __init__(self, buf, base, end, rows, *, cdr: bool, order: str, msgtype: str) -> None:
        self.buf = buf  # uint8, every message of the batch back to back
        self.views: dict[str, np.ndarray] = {}  # CDR: buf seen as float64, uint32, ...
        self.base = base  # where alignment counts from: the byte after the CDR header
        self.pos = base.copy()
        self.end = end  # one past each message's last byte
        self.rows = rows  # index in the caller's batch, for error messages
        self.cdr, self.order, self.msgtype = cdr, order, msgtype

    def subset(self, mask: np.ndarray) -> _Cursors:
        sub = _Cursors(
            self.buf, self.base[mask], self.end[mask], self.rows[mask],
            cdr=self.cdr, order=self.order, msgtype=self.msgtype,
        )  # fmt: skip
        sub.pos = self.pos[mask]
        sub.views = self.views
        return sub

    def fail(self, bad: np.ndarray, what: str) -> DecodeError:
        i = int(np.argmax(bad))
        row = int(self.rows[i])
        where = int(self.pos[i] - self.base[i])
        return DecodeError(
            f"{self.msgtype}: message {row} of the batch is truncated or malformed: {what} "
            f"at byte {where} of a {int(self.end[i] - self.base[i])}-byte body",
            msgtype=self.msgtype,
            index=row,
        )

    def _take(self, size: int, count: int, what: str) -> np.ndarray:
        """Align to `size`, check `size*count` bytes remain, return their start; advance."""
        if self.cdr and size > 1:  # CDR aligns each primitive to its size, from the body start
            self.pos = self.base + ((self.pos - self.base + (size - 1)) & -size)
        start = self.pos
        self.pos = start + size * count
        over = self.pos > self.end
        if over.any():
            self.pos = start
            raise self.fail(over, what)
        return start

    def read(self, dtype: str, what: str, count: int = 1) -> np.ndarray:
        """Values of a primitive (or a fixed array of `count`): shape (n,) or (n, count)."""
        kind = np.dtype(self.order + dtype)
        size = kind.itemsize
        start = self._take(size, count, what)
        if self.cdr:
            # Bodies start 8-aligned in buf (see _join), so an aligned field is an element of
            # buf viewed as that type: gather elements, not bytes.
            view = self.views.get(kind.str)
            if view is None:
                view = self.views[kind.str] = self.buf.view(kind)
            index = start // size
            values = view[index] if count == 1 else view[index[:, None] + np.arange(count)]
        else:  # ROS 1 is packed: fields sit at any offset
            raw = self.buf[start[:, None] + np.arange(size * count)]
            values = raw.view(kind)
            values = values[:, 0] if count == 1 else values
        return values.astype(dtype)  # native byte order, and a copy that owns its memory

    def skip(self, dtype: str, what: str, count: int = 1) -> None:
        self._take(np.dtype(dtype).itemsize, count, what)

    def count(self, what: str, min_element: int) -> np.ndarray:
        """A sequence length, refused when the elements could not fit in what remains."""
        n = self.read("u4", what).astype(np.int64)
        bad = n * min_element > self.end - self.pos
        if bad.any():
            raise self.fail(bad, f"{what} = {int(n[np.argmax(bad)])} (too many for the bytes left)")
        return n

    def string(self, what: str) -> tuple[np.ndarray, np.ndarray]:
        """Skip a string; return where its characters are and how many there are."""
        length = self.read("u4", f"{what} length").astype(np.int64)
        start = self._take(1, 0, what)
        self.pos = start + length
        over = self.pos > self.end
        if over.any():
            raise self.fail(over, f"{what} ({int(length[np.argmax(over)])} bytes)")
        if not self.cdr:
            return start, length
        # CDR counts the terminating NUL (some writers write 0 for ""); a missing NUL means
        # we are not reading a string: the layout is not what we assume.
        bad = (length > 0) & (self.buf[np.maximum(self.pos - 1, 0)] != 0)
        if bad.any():
            raise self.fail(bad, f"{what} is not NUL-terminated")
        return start, np.maximum(length - 1, 0)

    def stamp_ns(self) -> np.ndarray:
        """A std_msgs/Header's stamp (ROS 1: after the sequence number)."""
        if self.cdr:
            sec = self.read("i4", "header.stamp.sec").astype(np.int64)
        else:
            self.skip("u4", "header.seq")
            sec = self.read("u4", "header.stamp.sec").astype(np.int64)
        return sec * 1_000_000_000 + self.read("u4", "header.stamp.nanosec")

    def finish(self) -> None:
        """Refuse leftover bytes: they mean the message is not the layout we assume."""
        slack = 7 if self.cdr else 0  # writers may pad a CDR body to a multiple of 4 or 8
        bad = self.end - self.pos > slack
        if bad.any():
            raise self.fail(bad, f"{int((self.end - self.pos)[np.argmax(bad)])} unexpected bytes")


def _strings(buf: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Decode strings given by (start, length) into an object array, one decode per distinct.

    Strings are grouped by their size in 8-byte words, zero-padded and read as uint64 words, so
    finding the distinct ones is integer work; only those are decoded to Python str.
    """
    out = np.empty(len(start), dtype=object)
    words = (length + 7) >> 3
    sizes = np.unique(words)
    for m in sizes.tolist():
        rows = slice(None) if len(sizes) == 1 else np.flatnonzero(words == m)
        at, n = start[rows], length[rows]
        if m == 0:
            out[rows] = ""
            continue
        offsets = np.arange(8 * m)
        raw = buf[np.minimum(at[:, None] + offsets, len(buf) - 1)]
        raw[offsets >= n[:, None]] = 0
        keys = raw.view("<u8")  # (rows, m)
        if (n == n[0]).all() and (keys == keys[0]).all():  # usual: one frame_id for a topic
            out[rows] = raw[0, : n[0]].tobytes().decode("utf-8", "replace")
            continue
        codes = n  # the length is part of the key: "ab" and "ab\0" differ
        for w in range(m):
            word = np.unique(keys[:, w], return_inverse=True)[1]
            codes = np.unique(codes * (word.max() + 1) + word, return_inverse=True)[1]
        _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
        text = np.empty(len(first), dtype=object)
        text[:] = [raw[r, : n[r]].tobytes().decode("utf-8", "replace") for r in first.tolist()]
        out[rows] = text[inverse]
    return out


# --- one function per message type: cursors in, columns out ------------------------------------
def _pose(c: _Cursors, prefix: str, cols: dict, what: str) -> None:
    values = c.read("f8", what, 7)
    for i, name in enumerate(("px", "py", "pz", "qx", "qy", "qz", "qw")):
        cols[prefix + name] = values[:, i]


def _header(c: _Cursors, cols: dict) -> None:
    cols["stamp_ns"] = c.stamp_ns()
    cols["frame_id"] = c.string("header.frame_id")


def _odometry(c: _Cursors) -> dict:
    cols: dict = {}
    _header(c, cols)
    cols["child_frame_id"] = c.string("child_frame_id")
    _pose(c, "", cols, "pose.pose")
    c.skip("f8", "pose.covariance", 36)
    twist = c.read("f8", "twist.twist", 6)
    c.skip("f8", "twist.covariance", 36)
    for i, name in enumerate(("vx", "vy", "vz", "wx", "wy", "wz")):
        cols[name] = twist[:, i]
    return cols


def _pose_stamped(c: _Cursors) -> dict:
    cols: dict = {}
    _header(c, cols)
    _pose(c, "", cols, "pose")
    return cols


def _nav_sat_fix(c: _Cursors) -> dict:
    cols: dict = {}
    _header(c, cols)
    cols["status"] = c.read("i1", "status.status").astype(np.int64)
    c.skip("u2", "status.service")
    fix = c.read("f8", "latitude/longitude/altitude", 3)
    cols["lat"], cols["lon"], cols["alt"] = fix[:, 0], fix[:, 1], fix[:, 2]
    c.skip("f8", "position_covariance", 9)
    c.skip("u1", "position_covariance_type")
    return cols


def _imu(c: _Cursors) -> dict:
    cols: dict = {}
    _header(c, cols)
    quat = c.read("f8", "orientation", 4)
    c.skip("f8", "orientation_covariance", 9)
    gyro = c.read("f8", "angular_velocity", 3)
    c.skip("f8", "angular_velocity_covariance", 9)
    acc = c.read("f8", "linear_acceleration", 3)
    c.skip("f8", "linear_acceleration_covariance", 9)
    for values, names in ((quat, "qx qy qz qw"), (gyro, "wx wy wz"), (acc, "ax ay az")):
        for i, name in enumerate(names.split()):
            cols[name] = values[:, i]
    return cols


# Smallest possible element sizes: a garbage count is refused before any loop runs on it.
_MIN_DETECTION = 100  # header 12 + results count 4 + bbox 80 + id length 4
_MIN_HYPOTHESIS = 356  # class_id length 4 + score 8 + pose 56 + covariance 288
_BOX = ("cx", "cy", "cz", "qx", "qy", "qz", "qw", "sx", "sy", "sz")


def _detection3d_array(c: _Cursors) -> dict:
    """One row per detection. Loops run over the detection index and the result index (a few
    dozen at most), each step advancing the cursors of every message that has that many."""
    stamp = c.stamp_ns()
    frame = c.string("header.frame_id")
    count = c.count("detections count", _MIN_DETECTION)
    first = np.cumsum(count) - count  # row of each message's first detection
    total = int(count.sum())
    msg = np.repeat(np.arange(len(count)), count)
    box = np.full((total, len(_BOX)), np.nan)
    score = np.full(total, np.nan)
    class_at = np.zeros(total, np.int64)  # (start, length) of strings, decoded once at the end
    class_len = np.zeros(total, np.int64)
    id_at = np.zeros(total, np.int64)
    id_len = np.zeros(total, np.int64)
    for j in range(int(count.max(initial=0))):
        has = count > j
        d = c.subset(has)
        rows = first[has] + j
        d.stamp_ns()
        d.string("detections[].header.frame_id")
        n_results = d.count("detections[].results count", _MIN_HYPOTHESIS)
        for k in range(int(n_results.max(initial=0))):
            more = n_results > k
            r = d.subset(more)
            at, length = r.string("detections[].results[].hypothesis.class_id")
            value = r.read("f8", "detections[].results[].hypothesis.score")
            r.skip("f8", "detections[].results[].pose", 7 + 36)
            if k == 0:
                class_at[rows[more]], class_len[rows[more]] = at, length
                score[rows[more]] = value
            d.pos[more] = r.pos
        box[rows] = d.read("f8", "detections[].bbox", len(_BOX))
        id_at[rows], id_len[rows] = d.string("detections[].id")
        c.pos[has] = d.pos
    c.finish()
    cols = {
        "msg_index": c.rows[msg].astype(np.int64),
        "stamp_ns": stamp[msg],
        "frame_id": _strings(c.buf, frame[0], frame[1])[msg],
        "class_id": _strings(c.buf, class_at, class_len),
        "score": score,
        "track_id": _strings(c.buf, id_at, id_len),
    }
    cols.update({name: box[:, i] for i, name in enumerate(_BOX)})
    return cols


_DECODERS: dict[str, Callable[[_Cursors], dict]] = {
    "nav_msgs/msg/Odometry": _odometry,
    "geometry_msgs/msg/PoseStamped": _pose_stamped,
    "sensor_msgs/msg/NavSatFix": _nav_sat_fix,
    "sensor_msgs/msg/Imu": _imu,
    "vision_msgs/msg/Detection3DArray": _detection3d_array,
}
# ROS 1 vision_msgs (Detection3D with `ObjectHypothesisWithPose{int64 id, ...}`, a source cloud)
# is a different layout altogether: left to the generic decoder.
_ROS1_TYPES = set(_DECODERS) - {"vision_msgs/msg/Detection3DArray"}


def _run(msgtype: str, decode: Callable[[_Cursors], dict], encoding: str, batch) -> dict:
    """Join the batch, find each message's body and byte order, decode, return the columns."""
    n = len(batch)
    length = np.fromiter(map(len, batch), np.int64, count=n)
    buf, start = _join(batch, length, aligned=encoding == "cdr")
    end = start + length
    rows = np.arange(n)
    if encoding == "ros1":
        cursors = _Cursors(buf, start, end, rows, cdr=False, order="<", msgtype=msgtype)
        return _finish(decode, cursors)
    short = length < 4
    if short.any():
        i = int(np.argmax(short))
        raise DecodeError(
            f"{msgtype}: message {i} of the batch has {int(length[i])} bytes, "
            "less than the 4-byte CDR header",
            msgtype=msgtype,
            index=i,
        )
    head = buf[start[:, None] + np.arange(2)]
    kind = head[:, 0].astype(np.int64) << 8 | head[:, 1]
    # Only plain CDR (XCDR1) 0x0000 big-endian / 0x0001 little-endian: XCDR2 aligns float64 to
    # 4 and parameter lists are not positional, so reading them here would give wrong numbers.
    bad = kind > 1
    if bad.any():
        i = int(np.argmax(bad))
        raise DecodeError(
            f"{msgtype}: message {i} of the batch has CDR encapsulation 0x{int(kind[i]):04x}; "
            "only plain CDR (0x0000, 0x0001) has a fast path: decode it with a generic decoder",
            msgtype=msgtype,
            index=i,
        )
    parts = []
    for little, order in ((1, "<"), (0, ">")):
        mask = kind == little
        if mask.any() or (little and n == 0):
            cursors = _Cursors(
                buf, start[mask] + 4, end[mask], rows[mask], cdr=True, order=order, msgtype=msgtype
            )
            parts.append((mask, _finish(decode, cursors)))
    if len(parts) == 1:
        return parts[0][1]
    return _merge(parts, n)


_PADS = [bytes(i) for i in range(8)]


def _join(
    batch: Sequence[bytes], length: np.ndarray, aligned: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One buffer holding the batch, and where each message starts in it.

    aligned: each message starts 4 bytes before a multiple of 8, so each CDR body (after the
    4-byte header) starts on a multiple of 8, and so does every aligned float64 in it.
    """
    if not aligned:
        return np.frombuffer(b"".join(batch), np.uint8), np.cumsum(length) - length
    padded = (length + 7) & -8
    start = 4 + np.cumsum(padded) - padded
    parts: list[bytes] = [_PADS[4]] * (2 * len(batch) + 1)
    parts[1::2] = batch
    parts[2::2] = [_PADS[p] for p in (padded - length).tolist()]
    parts.append(_PADS[4])  # the total is a multiple of 8: buf can be viewed as float64
    return np.frombuffer(b"".join(parts), np.uint8), start


def _finish(decode: Callable[[_Cursors], dict], cursors: _Cursors) -> dict:
    cols = decode(cursors)
    cursors.finish()
    for name, value in cols.items():
        if isinstance(value, tuple):  # a string still given as (start, length)
            cols[name] = _strings(cursors.buf, *value)
    return cols


def _merge(parts: list[tuple[np.ndarray, dict]], n: int) -> dict:
    """Columns of a little-endian and a big-endian sub-batch, back in batch order."""
    first = parts[0][1]
    if "msg_index" in first:  # one row per detection: concatenate, then order by message
        cols = {k: np.concatenate([p[k] for _, p in parts]) for k in first}
        order = np.argsort(cols["msg_index"], kind="stable")
        return {k: v[order] for k, v in cols.items()}
    merged = {}
    for name, value in first.items():
        merged[name] = np.empty(n, dtype=value.dtype)
        for mask, cols in parts:
            merged[name][mask] = cols[name]
    return merged


def bulk_decoder(msgtype: str, encoding: str, definition: str | None = None) -> BatchDecoder | None:
    """A function decoding a batch of serialized messages of `msgtype` into numpy columns.

    None when there is no fast path for (msgtype, encoding), or when `definition` (the schema
    text embedded in the log) does not have the layout the fast path reads; use a generic
    decoder then. The function raises DecodeError for a message that does not parse.

    >>> sorted(bulk_decoder("nav_msgs/Odometry", "ros1")([]))[:4]
    ['child_frame_id', 'frame_id', 'px', 'py']
    """
    msgtype = grammar.long(msgtype)
    if encoding not in ("cdr", "ros1") or msgtype not in _DECODERS:
        return None
    if encoding == "ros1" and msgtype not in _ROS1_TYPES:
        return None
    # An empty definition (e.g. a rosbag2 .db3 from before definitions were stored) says nothing.
    if definition and definition.strip() and not _same_layout(msgtype, encoding, definition):
        return None
    decode = _DECODERS[msgtype]

    def decode_batch(batch: Sequence[bytes]) -> dict[str, np.ndarray]:
        return _run(msgtype, decode, encoding, batch)

    decode_batch.__doc__ = f"Decode a batch of {encoding} {msgtype} messages into columns."
    return decode_batch


def _same_layout(msgtype: str, encoding: str, definition: str) -> bool:
    msgs = _ROS1_MSGS if encoding == "ros1" else _ROS2_MSGS
    expected = _layout(msgtype, grammar.concatenated(msgtype, msgs))
    return expected is not None and _layout(msgtype, definition) == expected


def schema_text(msgtype: str, encoding: str = "cdr") -> str:
    """The message definition the fast path assumes, as a log embeds it (for writers, tests).

    >>> schema_text("geometry_msgs/msg/PoseStamped").splitlines()[:2]
    ['std_msgs/Header header', 'Pose pose']
    """
    msgtype = grammar.long(msgtype)
    if msgtype not in _DECODERS:
        raise ValueError(f"no fast-path layout for {msgtype}; known: {', '.join(_DECODERS)}")
    return grammar.concatenated(msgtype, _ROS1_MSGS if encoding == "ros1" else _ROS2_MSGS)


__all__ = ["BatchDecoder", "DecodeError", "bulk_decoder", "schema_text"]
