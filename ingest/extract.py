"""Turn decoded messages into the ego / gnss / imu / objects / camera tables.

Two halves. `generic_decoder` is the per-message fallback of `ingest.decode.bulk_decoder`: it
decodes with rosbags (types parsed from the definition embedded in the file) or `json.loads`
and packs the same "raw columns" (see docs/ingest.md). `build_tables` then does the
kind-level work once, on whole columns: time base, yaw, derived speed/accel/yaw rate, frame
transform, categories.

>>> normalize_msgtype("nav_msgs/Odometry")
'nav_msgs/msg/Odometry'
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

KINDS = ("ego", "gnss", "imu", "objects", "camera", "ignore")

# docs/contract.md §3: topics are recognised by (normalised) message type.
DEFAULT_KINDS: dict[str, str] = {
    "nav_msgs/msg/Odometry": "ego",
    "geometry_msgs/msg/PoseStamped": "ego",
    "sensor_msgs/msg/NavSatFix": "gnss",
    "sensor_msgs/msg/Imu": "imu",
    "vision_msgs/msg/Detection3DArray": "objects",
    "sensor_msgs/msg/CompressedImage": "camera",
    "foxglove.CompressedImage": "camera",
    "foxglove_msgs/msg/CompressedImage": "camera",
}

# The raw-column layout a message type decodes to. Types outside this table that a topic map
# assigns to a kind are decoded by the kind's layout, reading fields by name.
SHAPES: dict[str, str] = {
    "nav_msgs/msg/Odometry": "odometry",
    "geometry_msgs/msg/PoseStamped": "pose",
    "sensor_msgs/msg/NavSatFix": "navsatfix",
    "sensor_msgs/msg/Imu": "imu",
    "vision_msgs/msg/Detection3DArray": "detections",
}
KIND_SHAPES = {"ego": "ego", "gnss": "navsatfix", "imu": "imu", "objects": "detections"}

# Skew beyond this between header stamps and log time means the stamps are on another clock.
SKEW_TOLERANCE_NS = 1_000_000_000
WORLD_FRAMES = {"map", "odom", "world"}

Decoder = Callable[[Sequence[bytes]], dict[str, np.ndarray]]


def normalize_msgtype(msgtype: str) -> str:
    """ROS 1 and ROS 2 spellings alike: 'nav_msgs/Odometry' -> 'nav_msgs/msg/Odometry'.

    >>> normalize_msgtype("foxglove.CompressedImage")
    'foxglove.CompressedImage'
    """
    parts = msgtype.strip().split("/")
    if len(parts) == 2 and all(parts):
        return f"{parts[0]}/msg/{parts[1]}"
    return msgtype.strip()


def shape_of(msgtype: str, kind: str) -> str | None:
    """The raw-column layout to decode a topic of `msgtype` used as `kind` into."""
    if kind == "camera":
        return "image"
    return SHAPES.get(msgtype) or KIND_SHAPES.get(kind)


# --- generic per-message decoding ------------------------------------------------------------


def _get(obj: Any, *names: str) -> Any:
    """The first present field of `names` on a rosbags message or a JSON dict, else None."""
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _path(obj: Any, dotted: str, default: Any = None) -> Any:
    for name in dotted.split("."):
        if obj is None:
            return default
        obj = _get(obj, name)
    return default if obj is None else obj


def _float(obj: Any, dotted: str) -> float:
    value = _path(obj, dotted)
    return float("nan") if value is None else float(value)


def _stamp(msg: Any) -> int:
    stamp = _path(msg, "header.stamp") or _get(msg, "timestamp")
    if stamp is None:
        return 0
    if isinstance(stamp, int | float):  # JSON producers sometimes log a plain number
        return int(stamp)
    sec = _get(stamp, "sec", "secs") or 0
    nsec = _get(stamp, "nanosec", "nsec", "nsecs") or 0
    return int(sec) * 1_000_000_000 + int(nsec)


def _header(msg: Any) -> dict[str, Any]:
    return {"stamp_ns": _stamp(msg), "frame_id": str(_path(msg, "header.frame_id", ""))}


def _quat(obj: Any, prefix: str) -> dict[str, float]:
    return {f"q{a}": _float(obj, f"{prefix}.{a}") for a in "xyzw"}


def _pose_row(msg: Any) -> dict[str, Any]:
    row = _header(msg)
    row.update({f"p{a}": _float(msg, f"pose.position.{a}") for a in "xyz"})
    row.update(_quat(msg, "pose.orientation"))
    return row


def _odometry_row(msg: Any) -> dict[str, Any]:
    row = _header(msg)
    row["child_frame_id"] = str(_get(msg, "child_frame_id") or "")
    row.update({f"p{a}": _float(msg, f"pose.pose.position.{a}") for a in "xyz"})
    row.update(_quat(msg, "pose.pose.orientation"))
    row.update({f"v{a}": _float(msg, f"twist.twist.linear.{a}") for a in "xyz"})
    row.update({f"w{a}": _float(msg, f"twist.twist.angular.{a}") for a in "xyz"})
    return row


def _ego_row(msg: Any) -> dict[str, Any]:
    # A custom type mapped to ego: Odometry-like (pose.pose) or PoseStamped-like (pose.position).
    pose = _get(msg, "pose")
    return _odometry_row(msg) if _get(pose, "pose") is not None else _pose_row(msg)


def _navsatfix_row(msg: Any) -> dict[str, Any]:
    row = _header(msg)
    status = _path(msg, "status.status", -1)
    row.update(
        status=int(status),
        lat=_float(msg, "latitude"),
        lon=_float(msg, "longitude"),
        alt=_float(msg, "altitude"),
    )
    return row


def _imu_row(msg: Any) -> dict[str, Any]:
    row = _header(msg)
    row.update(_quat(msg, "orientation"))
    row.update({f"w{a}": _float(msg, f"angular_velocity.{a}") for a in "xyz"})
    row.update({f"a{a}": _float(msg, f"linear_acceleration.{a}") for a in "xyz"})
    return row


def _detection_rows(msg: Any) -> list[dict[str, Any]]:
    head = _header(msg)
    rows = []
    for det in _get(msg, "detections") or []:
        results = _get(det, "results")
        first = results[0] if results is not None and len(results) else None
        # Humble+: results[0].hypothesis.{class_id, score}; older vision_msgs: results[0].{id,score}
        hyp = _get(first, "hypothesis") if first is not None else None
        class_id = _get(hyp, "class_id") if hyp is not None else None
        if class_id is None and first is not None:
            class_id = _get(first, "class_id", "id")
        score = _get(hyp, "score") if hyp is not None else None
        if score is None and first is not None:
            score = _get(first, "score")
        row = dict(head)
        row.update(
            class_id="" if class_id is None else str(class_id),
            score=float("nan") if score is None else float(score),
            track_id=str(_get(det, "id", "tracking_id") or ""),
        )
        row.update({f"c{a}": _float(det, f"bbox.center.position.{a}") for a in "xyz"})
        row.update(_quat(det, "bbox.center.orientation"))
        row.update({f"s{a}": _float(det, f"bbox.size.{a}") for a in "xyz"})
        rows.append(row)
    return rows


def _image_row(msg: Any) -> dict[str, Any]:
    row = _header(msg)
    data = _get(msg, "data")
    row.update(format=str(_get(msg, "format") or ""), bytes=0 if data is None else len(data))
    return row


ROW_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "odometry": _odometry_row,
    "pose": _pose_row,
    "ego": _ego_row,
    "navsatfix": _navsatfix_row,
    "imu": _imu_row,
    "detections": _detection_rows,
    "image": _image_row,
}
COLUMNS: dict[str, tuple[str, ...]] = {
    "odometry": tuple(_odometry_row({}).keys()),
    "pose": tuple(_pose_row({}).keys()),
    "navsatfix": tuple(_navsatfix_row({}).keys()),
    "imu": tuple(_imu_row({}).keys()),
    "detections": (
        *("msg_index", "stamp_ns", "frame_id", "class_id", "score", "track_id"),
        *("cx", "cy", "cz", "qx", "qy", "qz", "qw", "sx", "sy", "sz"),
    ),
    "image": ("stamp_ns", "frame_id", "format", "bytes"),
}
_STRINGS = {"frame_id", "child_frame_id", "class_id", "track_id", "format"}
_INTS = {"stamp_ns", "msg_index", "status", "bytes"}


def pack(rows: list[dict[str, Any]], columns: Sequence[str]) -> dict[str, np.ndarray]:
    """Rows of one layout -> the raw-columns dict (numpy arrays of equal length)."""
    out = {}
    for name in columns:
        values = [row.get(name) for row in rows]
        if name in _STRINGS:
            out[name] = np.array([v or "" for v in values], dtype=object)
        elif name in _INTS:
            out[name] = np.array([0 if v is None else v for v in values], dtype=np.int64)
        else:
            out[name] = np.array(values, dtype=np.float64)
    return out


class _Failures:
    """Counts messages the generic decoder had to skip, for one warning per topic."""

    def __init__(self) -> None:
        self.count = 0
        self.first: str | None = None

    def add(self, exc: Exception) -> None:
        self.count += 1
        self.first = self.first or f"{type(exc).__name__}: {exc}"


def generic_decoder(
    msgtype: str,
    shape: str,
    encoding: str,
    definition: str | None,
    definition_encoding: str | None,
    failures: _Failures,
) -> Decoder | None:
    """A per-message decoder packing `shape`'s raw columns, or None if the type is unknown.

    Example: generic_decoder("nav_msgs/msg/Odometry", "odometry", "cdr", text, "ros2msg", f)
    """
    if encoding == "json":
        deserialize: Callable[[bytes], Any] = json.loads
    elif encoding in ("cdr", "ros1"):
        store = _typestore(msgtype, encoding, definition, definition_encoding)
        if store is None:
            return None
        method = store.deserialize_ros1 if encoding == "ros1" else store.deserialize_cdr

        def deserialize(data: bytes) -> Any:
            return method(data, msgtype)
    else:
        return None
    row_function = ROW_FUNCTIONS[shape]

    def decode(batch: Sequence[bytes]) -> dict[str, np.ndarray]:
        rows: list[dict[str, Any]] = []
        for index, data in enumerate(batch):
            try:
                produced = row_function(deserialize(bytes(data)))
            except Exception as exc:  # one bad message must not lose the rest of the topic
                failures.add(exc)
                continue
            # msg_index lines rows up with their messages' log times, also when one is skipped
            for row in produced if shape == "detections" else [produced]:
                row["msg_index"] = index
                rows.append(row)
        layout = "detections" if shape == "detections" else _layout(shape, rows)
        columns = COLUMNS[layout]
        return pack(rows, columns if "msg_index" in columns else (*columns, "msg_index"))

    return decode


def _layout(shape: str, rows: list[dict[str, Any]]) -> str:
    if shape != "ego":
        return shape
    return "odometry" if rows and "vx" in rows[0] else "pose"


def _typestore(msgtype, encoding, definition, definition_encoding):
    from rosbags.typesys import Stores, TypesysError, get_types_from_idl, get_types_from_msg
    from rosbags.typesys import get_typestore as get_store

    base = Stores.ROS1_NOETIC if encoding == "ros1" else Stores.LATEST
    if not definition:
        store = get_store(base)
        return store if msgtype in store.fielddefs else None
    try:
        if definition_encoding and "idl" in definition_encoding:
            types = get_types_from_idl(definition)
        else:
            types = get_types_from_msg(definition, msgtype)
    except TypesysError:  # a damaged or odd definition in the file: the standard one, if any
        return _typestore(msgtype, encoding, None, None)
    # The embedded definition wins: try it on top of the standard types (so a definition that
    # leaves out a dependency still works), else alone (it clashes with the standard ones).
    for store_name in (base, Stores.EMPTY):
        store = get_store(store_name)
        try:
            store.register(types)
        except TypesysError:
            continue
        return store if msgtype in store.fielddefs else None
    return None


# --- kind-level processing -------------------------------------------------------------------


@dataclass
class TopicColumns:
    """The decoded raw columns of one topic, with `log_time_ns` per row."""

    topic: str
    msgtype: str
    kind: str
    count: int
    cols: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.cols.get("log_time_ns", ()))


def time_base(tc: TopicColumns, warnings: list[str]) -> np.ndarray:
    """t_ns for a topic: header stamps, unless missing or skewed from log time (then log time)."""
    stamp, log = tc.cols["stamp_ns"], tc.cols["log_time_ns"]
    if not len(stamp):
        return stamp.copy()
    missing = int(np.count_nonzero(stamp <= 0))
    skew = float(np.median(np.abs(log - stamp).astype(np.float64)))
    if missing:
        warnings.append(
            f"topic {tc.topic}: {missing:,} of {len(stamp):,} messages have no header stamp; "
            "using the log (receive) time for the whole topic"
        )
        return log.copy()
    if skew > SKEW_TOLERANCE_NS:
        warnings.append(
            f"topic {tc.topic}: header stamps differ from log time by {skew / 1e9:,.1f} s "
            "(median), so they are on another clock; using the log (receive) time instead"
        )
        return log.copy()
    return stamp.copy()


def _yaw(c: dict[str, np.ndarray]) -> np.ndarray:
    qx, qy, qz, qw = c["qx"], c["qy"], c["qz"], c["qw"]
    return np.arctan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))


def _derivative(values: np.ndarray, t_ns: np.ndarray, half_span_s: float) -> np.ndarray:
    """Centred difference over about ±half_span_s: a derivative that is also a smoother.

    Differencing 100 Hz motion-capture poses sample to sample amplifies millimetre noise into
    metres per second; spanning a fixed time keeps the noise down at any rate.
    """
    n = len(values)
    if n < 2:
        return np.zeros(n)
    t = (t_ns - t_ns[0]).astype(np.float64) / 1e9
    dt = np.diff(t)
    step = float(np.median(dt[dt > 0])) if np.any(dt > 0) else 0.0
    k = max(1, round(half_span_s / step)) if step > 0 else 1
    idx = np.arange(n)
    hi, lo = np.minimum(idx + k, n - 1), np.maximum(idx - k, 0)
    span = t[hi] - t[lo]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(span > 0, (values[hi] - values[lo]) / span, np.nan)
    out[~np.isfinite(out)] = 0.0
    return out


def _choose_ego(candidates: list[TopicColumns], warnings: list[str]) -> TopicColumns | None:
    usable = [c for c in candidates if c.rows]
    if not usable:
        return None
    best = max(usable, key=lambda c: ("vx" in c.cols, c.rows))
    if len(usable) > 1:
        others = ", ".join(c.topic for c in usable if c is not best)
        warnings.append(f"several ego topics; using {best.topic} and ignoring {others}")
    return best


def ego_table(tc: TopicColumns, warnings: list[str]) -> pa.Table:
    c = tc.cols
    t = time_base(tc, warnings)
    order = np.argsort(t, kind="stable")
    c = {k: v[order] for k, v in c.items()}
    t = t[order]
    yaw = _yaw(c)
    if "vx" in c and np.isfinite(c["vx"]).any():
        speed = np.sqrt(c["vx"] ** 2 + c["vy"] ** 2 + np.nan_to_num(c["vz"]) ** 2)
        yaw_rate = c["wz"]
    else:  # PoseStamped: derived from successive poses, in 3D so a climbing aircraft counts
        vel = [_derivative(c[f"p{a}"], t, 0.1) for a in "xyz"]
        speed = np.sqrt(vel[0] ** 2 + vel[1] ** 2 + vel[2] ** 2)
        yaw_rate = _derivative(np.unwrap(yaw), t, 0.1)
    accel = _derivative(speed, t, 0.25)
    return pa.table(
        {
            "t_ns": pa.array(t, pa.int64()),
            "stamp_ns": pa.array(c["stamp_ns"], pa.int64()),
            "log_time_ns": pa.array(c["log_time_ns"], pa.int64()),
            "x": c["px"],
            "y": c["py"],
            "z": c["pz"],
            "yaw": yaw,
            "speed": speed,
            "accel": accel,
            "yaw_rate": yaw_rate,
            "frame_id": pa.array(c["frame_id"].tolist(), pa.string()),
        }
    )


def _stack(parts: list[TopicColumns], warnings: list[str]) -> tuple[dict, np.ndarray] | None:
    parts = [p for p in parts if p.rows]
    if not parts:
        return None
    t = np.concatenate([time_base(p, warnings) for p in parts])
    cols = {k: np.concatenate([p.cols[k] for p in parts]) for k in parts[0].cols}
    order = np.argsort(t, kind="stable")
    return {k: v[order] for k, v in cols.items()}, t[order]


def _simple_table(parts, names, warnings) -> pa.Table | None:
    stacked = _stack(parts, warnings)
    if stacked is None:
        return None
    c, t = stacked
    data = {
        "t_ns": pa.array(t, pa.int64()),
        "stamp_ns": pa.array(c["stamp_ns"], pa.int64()),
        "log_time_ns": pa.array(c["log_time_ns"], pa.int64()),
    }
    data.update({n: c[n] for n in names})
    return pa.table(data)


def _strip(frame: str) -> str:
    return frame.lstrip("/")


def objects_table(parts, ego: pa.Table | None, ego_tc, warnings) -> pa.Table | None:
    stacked = _stack(parts, warnings)
    if stacked is None:
        return None
    c, t = stacked
    x, y, z = c["cx"].copy(), c["cy"].copy(), c["cz"].copy()
    frames = np.array([_strip(f) for f in c["frame_id"]], dtype=object)
    world = set(WORLD_FRAMES)
    if ego_tc is not None:
        world.add(_strip(str(ego_tc.cols["frame_id"][0])))
        world.discard(_strip(str(ego_tc.cols.get("child_frame_id", [""])[0])))
    in_world = np.isin(frames, sorted(world))
    if in_world.any() and (ego is None or not ego.num_rows):
        warnings.append(
            f"{int(in_world.sum()):,} objects are in a world frame but there is no ego pose to "
            "move them into the ego frame; their x/y are left in the world frame"
        )
    elif in_world.any():
        et = ego["t_ns"].to_numpy()
        ex, ey, ez = (ego[n].to_numpy() for n in ("x", "y", "z"))
        eyaw = ego["yaw"].to_numpy()
        ot = t[in_world]
        i = np.clip(np.searchsorted(et, ot), 1, len(et) - 1) if len(et) > 1 else np.zeros_like(ot)
        if len(et) > 1:  # nearest ego pose by time, not just the next one
            i = np.where(np.abs(et[i - 1] - ot) <= np.abs(et[i] - ot), i - 1, i)
        dx, dy = x[in_world] - ex[i], y[in_world] - ey[i]
        cos, sin = np.cos(eyaw[i]), np.sin(eyaw[i])
        x[in_world] = cos * dx + sin * dy
        y[in_world] = -sin * dx + cos * dy
        z[in_world] = z[in_world] - np.nan_to_num(ez[i])
    category = [(s.strip().lower() or "unknown") for s in c["class_id"]]
    return pa.table(
        {
            "t_ns": pa.array(t, pa.int64()),
            "stamp_ns": pa.array(c["stamp_ns"], pa.int64()),
            "log_time_ns": pa.array(c["log_time_ns"], pa.int64()),
            "track_id": pa.array(c["track_id"].tolist(), pa.string()),
            "category": pa.array(category, pa.string()),
            "x": x,
            "y": y,
            "z": z,
            "distance": np.hypot(x, y),
            "length": c["sx"],
            "width": c["sy"],
            "height": c["sz"],
            "score": c["score"],
            "frame_id": pa.array(c["frame_id"].tolist(), pa.string()),
        }
    )


def camera_table(parts, warnings) -> pa.Table | None:
    stacked = _stack(parts, warnings)
    if stacked is None:
        return None
    c, t = stacked
    return pa.table(
        {
            "t_ns": pa.array(t, pa.int64()),
            "log_time_ns": pa.array(c["log_time_ns"], pa.int64()),
            "topic": pa.array(c["topic"].tolist(), pa.string()),
            "format": pa.array(c["format"].tolist(), pa.string()),
            "bytes": pa.array(c["bytes"], pa.int64()),
        }
    )


REQUIRED = {
    "ego": ("px", "py", "qz"),
    "gnss": ("lat", "lon"),
    "imu": ("ax", "wz"),
    "objects": ("cx", "class_id"),
    "camera": ("bytes",),
}


# Columns of which at least one value must be finite for a topic to be usable as that kind: a
# type decoded by field names (a --topic-map entry) that lacks the fields gives only NaN.
VALUED = {"ego": ("px", "py"), "gnss": ("lat", "lon"), "imu": ("ax", "wz"), "objects": ("cx",)}


def build_tables(
    topics: list[TopicColumns], warnings: list[str], used: dict[str, str] | None = None
) -> dict[str, pa.Table | None]:
    """Kind-level processing on whole columns -> {kind: table or None}.

    `used`, when given, receives {topic: kind} for each topic whose rows went into a table.
    """
    by_kind: dict[str, list[TopicColumns]] = {k: [] for k in REQUIRED}
    for tc in topics:
        if tc.kind not in by_kind or not tc.rows:
            continue
        missing = [n for n in REQUIRED[tc.kind] if n not in tc.cols]
        if missing:
            warnings.append(
                f"topic {tc.topic} ({tc.msgtype}) has no {', '.join(missing)} and cannot be "
                f"used as {tc.kind}; check the --topic-map entry for it"
            )
            continue
        empty = [n for n in VALUED.get(tc.kind, ()) if not np.isfinite(tc.cols[n]).any()]
        if empty:
            warnings.append(
                f"topic {tc.topic} ({tc.msgtype}) has no values for {', '.join(empty)} in any "
                f"of its {tc.rows:,} messages, so it was not used as {tc.kind}; "
                "check the --topic-map entry for it"
            )
            continue
        by_kind[tc.kind].append(tc)
    ego_tc = _choose_ego(by_kind["ego"], warnings)
    # damaged messages can hold any float: inf and nan stay values, not warnings
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _tables(by_kind, ego_tc, warnings, used)


def _tables(by_kind, ego_tc, warnings, used) -> dict[str, pa.Table | None]:
    ego = ego_table(ego_tc, warnings) if ego_tc else None
    if used is not None:
        used.update({tc.topic: kind for kind, tcs in by_kind.items() for tc in tcs if tc.rows})
        for tc in by_kind["ego"]:
            if tc is not ego_tc:
                used.pop(tc.topic, None)
    imu_cols = ("ax", "ay", "az", "wx", "wy", "wz")
    return {
        "ego": ego,
        "gnss": _simple_table(by_kind["gnss"], ("lat", "lon", "alt", "status"), warnings),
        "imu": _simple_table(by_kind["imu"], imu_cols, warnings),
        "objects": objects_table(by_kind["objects"], ego, ego_tc, warnings),
        "camera": camera_table(by_kind["camera"], warnings),
    }
