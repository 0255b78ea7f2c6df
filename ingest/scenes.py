"""Scenes: a log cut into fixed time windows, each with kinematic and perception features and tags.

A scene is the unit of the flywheel (mined, labeled, tracked). Windows are `scene_seconds` long,
aligned to the first ego sample; the last, partial window is kept when it covers at least half a
window (a log shorter than that still yields its one short scene, so no log is invisible to
mining). Ego samples decide the time range: objects, GNSS fixes and camera frames outside it
belong to no scene. Everything is computed with numpy over whole columns (window ids from
`np.searchsorted`, reductions with `np.bincount` and `ufunc.at`), never row by row.

>>> import pyarrow as pa
>>> t = [1_700_000_000_000_000_000 + i * 100_000_000 for i in range(260)]   # 26 s at 10 Hz
>>> ego = pa.table({"t_ns": t, "speed": [10.0] * 260, "accel": [0.0] * 260})
>>> build_scenes("log", ego, None).column("scene_id").to_pylist()
['log-00000', 'log-00001', 'log-00002']
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flywheel import schemas

NS = 1_000_000_000

# --- object categories (lower-case, as the readers emit them) -------------------------------
VEHICLES = frozenset({"car", "truck", "bus", "motorcycle", "van", "trailer"})
KNOWN_CATEGORIES = VEHICLES | {"pedestrian", "cyclist", "animal"}
UNKNOWN_CATEGORY = "unknown"  # what a detection without a class is called in `categories`
# per-category distinct-track columns; n_other counts every category outside KNOWN_CATEGORIES
CATEGORY_COLUMNS = {
    "n_cars": "car",
    "n_trucks": "truck",
    "n_buses": "bus",
    "n_motorcycles": "motorcycle",
    "n_pedestrians": "pedestrian",
    "n_cyclists": "cyclist",
    "n_animals": "animal",
}

# --- geometry of "in the ego path" (ego frame: x forward, y left) --------------------------
PATH_HALF_WIDTH_M = 1.8  # half a 3.6 m lane: the object's centre is in the ego lane
PATH_LENGTH_M = 50.0  # about 2.5 s at highway speed; farther objects are not yet a concern
# the corridor bends with the ego's current curvature (yaw rate / speed): on a curve the lane
# ahead is not the straight line x > 0, y = 0; below this speed curvature is unreliable
PATH_MIN_SPEED = 1.0
PATH_SMOOTH_S = 1.0  # yaw rate averaged over this long: sensor noise must not bend the path
PATH_MIN_YAW_RATE = 0.03  # rad/s; below this the road is taken as straight (noise deadband)
MIN_SCORE = 0.5  # detections less confident than this are likely false positives: not counted
NEARBY_M = 30.0  # tracks whose lateral motion matters (could enter the ego lane soon)
CUT_IN_OUTSIDE_M = 2.5  # |y| beyond this: the vehicle is in the adjacent lane
CUT_IN_INSIDE_M = 1.5  # |y| below this: it is now in the ego lane, not merely drifting
CUT_IN_AHEAD_M = 30.0  # a cut-in matters when it lands a short distance ahead

# --- motion estimates ------------------------------------------------------------------------
VELOCITY_BASELINE_S = 0.5  # track velocities from positions ~0.5 s apart: detection noise of
#                            ~0.1 m gives ~0.3 m/s error instead of ~1.4 m/s at 10 Hz
JERK_BASELINE_S = 0.25  # d(accel)/dt over ~0.25 s, so 100 Hz pose logs do not explode
MAX_GAP_S = 2.0  # no derivative across a gap in the data longer than this
MIN_CLOSING_SPEED = 0.5  # m/s; below this a "time to collision" is noise, not a threat

# --- tag thresholds --------------------------------------------------------------------------
HARD_BRAKE_ACCEL = -4.0  # m/s²: comfortable stops stay above -3; -4 is an emergency-ish brake
NEAR_MISS_TTC_S = 1.5  # s: below ~1.5 s a human driver can no longer react comfortably
NEAR_MISS_DISTANCE_M = 5.0  # an object this close in the path while moving is a near miss
NEAR_MISS_MIN_SPEED = 2.0  # m/s: "moving"; creeping in a queue behind a car is not a near miss
STOPPED_SPEED = 0.5  # m/s: the whole window below walking pace (odometry noise ~0.1 m/s)
HIGH_SPEED = 25.0  # m/s (90 km/h): highway driving
SHARP_TURN_YAW_RATE = 0.3  # rad/s: a 90° turn in ~5 s; lane changes stay well below
NIGHT_START_HOUR = 20.0  # local solar hour; a rough proxy for darkness all year round
NIGHT_END_HOUR = 6.0

# Every tag ingest derives, in the order the embedder's one-hot block uses; the vocabulary of
# `scenes.tags` (these and the history simulator's tag) is flywheel.schemas.TAGS.
TAGS = schemas.DETECTED_TAGS

# The numeric columns the default embedder (ingest.embed.FeatureEmbedder) reads, in a stable
# order. Redundant columns (min_accel, distance_m, n_vehicles) are left out on purpose.
SCENE_FEATURES = (
    "max_speed",
    "mean_speed",
    "max_decel",
    "max_jerk",
    "max_abs_yaw_rate",
    "max_lateral_accel",
    "n_tracks",
    "n_in_path",
    "min_object_distance",
    "min_in_path_distance",
    "min_ttc_s",
    "max_track_lateral_speed",
    "n_cars",
    "n_trucks",
    "n_buses",
    "n_motorcycles",
    "n_pedestrians",
    "n_cyclists",
    "n_animals",
    "n_other",
    "start_hour_local",
    "n_ego_samples",
    "n_objects",
)

# The `scenes` table as ingest builds it: the lake's `scenes` schema (flywheel.schemas, where
# each column is described) but the `embedding` and `embedding_version` the pipeline appends.
EMBEDDING_COLUMNS = ("embedding", "embedding_version")
SCENES_SCHEMA = pa.schema([f for f in schemas.SCHEMAS["scenes"] if f.name not in EMBEDDING_COLUMNS])


def build_scenes(
    log_id: str,
    ego: pa.Table | None,
    objects: pa.Table | None,
    gnss: pa.Table | None = None,
    camera: pa.Table | None = None,
    scene_seconds: float = 10.0,
) -> pa.Table:
    """Cut a log into fixed windows and compute each window's features and tags.

    Windows are `scene_seconds` long from the first ego sample; the last, partial window is kept
    when it covers at least half a window and then ends just after the last ego sample. A
    window with no ego samples inside the range (a gap in the data) is kept with null kinematics.
    `ego`, `objects`, `gnss`, `camera` are the DecodedLog tables (any row order, duplicates and
    NaNs allowed); only `ego` decides whether there are scenes (no ego: zero rows with
    SCENES_SCHEMA). Missing objects/GNSS/camera give counts of 0 and nulls.

    >>> build_scenes("log", None, None).num_rows
    0
    """
    if not scene_seconds > 0:
        raise ValueError(f"scene_seconds must be positive, got {scene_seconds!r}")
    # a damaged log can hold any float (1e300, inf): features become inf/NaN (stored as null),
    # not warnings
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _build(log_id, ego, objects, gnss, camera, scene_seconds)


def _build(log_id, ego, objects, gnss, camera, scene_seconds) -> pa.Table:
    ego_t, ego_cols = _ego_arrays(ego)
    if ego_t.size == 0:
        return SCENES_SCHEMA.empty_table()
    width = max(1, round(scene_seconds * NS))
    starts, ends = _windows(ego_t, width)
    n = len(starts)
    out: dict[str, object] = {
        "scene_id": [f"{log_id}-{i:05d}" for i in range(n)],
        "log_id": [log_id] * n,
        "start_ns": starts,
        "end_ns": ends,
        "duration_s": (ends - starts) / NS,
    }
    out.update(_ego_features(ego_t, ego_cols, starts, ends))
    objs = _object_arrays(objects, starts, ends)
    out.update(_object_features(objs, ego_t, ego_cols, n))
    out.update(_place_and_time(gnss, starts, ends))
    out["keyframe_t_ns"] = _keyframes(camera, starts, ends)
    out["tags"] = _tags(out)
    return _to_table(out)


# --- windows -----------------------------------------------------------------------------------


def _windows(t: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Window starts and ends over the sorted ego times `t` (see the module docstring)."""
    span = int(t[-1] - t[0])
    count = span // width + 1
    if count > 1 and span - (count - 1) * width < width / 2:
        count -= 1  # the tail covers less than half a window: drop it
    starts = t[0] + width * np.arange(count, dtype=np.int64)
    # the last window ends just after the last sample, not at its nominal end
    ends = np.minimum(starts + width, t[-1] + 1)
    return starts, ends


def _window_of(t: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Window index per time, -1 outside every window."""
    w = np.searchsorted(starts, t, side="right") - 1
    inside = (w >= 0) & (t < ends[np.clip(w, 0, None)])
    return np.where(inside, w, -1)


# --- column access -----------------------------------------------------------------------------


def _float(table: pa.Table, name: str) -> np.ndarray:
    """A column as float64 with NaN for nulls; all-NaN when the column is missing."""
    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    column = table.column(name)
    if not pa.types.is_floating(column.type):
        column = column.cast(pa.float64(), safe=False)
    values = np.asarray(column.to_numpy(), dtype=np.float64)
    # an infinite speed or position is a decoding artefact: treat it as missing
    return np.where(np.isfinite(values), values, np.nan)


def _times(table: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """Rows with a timestamp, sorted by it (stable), and the int64 times."""
    column = table.column("t_ns")
    if column.null_count:
        table = table.filter(pc.is_valid(column))
        column = table.column("t_ns")
    t = np.asarray(column.cast(pa.int64()).to_numpy(), dtype=np.int64)
    order = np.argsort(t, kind="stable")
    return table.take(order), t[order]


def _ego_arrays(ego: pa.Table | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    if ego is None or ego.num_rows == 0 or "t_ns" not in ego.column_names:
        return np.empty(0, np.int64), {}
    ego, t = _times(ego)
    # duplicate timestamps (re-sent messages): keep the first, so every dt is positive
    t, first = np.unique(t, return_index=True)
    ego = ego.take(first)
    return t, {name: _float(ego, name) for name in ("speed", "accel", "yaw_rate")}


# --- ego features ------------------------------------------------------------------------------


def _group_max(ids: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per-group max ignoring NaN (NaN for groups with no finite value); ids < 0 are dropped."""
    out = np.full(n, np.nan)
    keep = (ids >= 0) & np.isfinite(values)
    np.fmax.at(out, ids[keep], values[keep])
    return out


def _group_min(ids: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    return -_group_max(ids, -values, n)


def _group_count(ids: np.ndarray, n: int, mask: np.ndarray | None = None) -> np.ndarray:
    keep = ids >= 0 if mask is None else (ids >= 0) & mask
    return np.bincount(ids[keep], minlength=n).astype(np.int64)


def _lag(t: np.ndarray, baseline_s: float, same: np.ndarray | None = None) -> int:
    """How many samples back a derivative should look to span about `baseline_s`."""
    dt = np.diff(t)
    ok = dt > 0 if same is None else (dt > 0) & same
    if not ok.any():
        return 1
    return int(np.clip(round(baseline_s * NS / np.median(dt[ok])), 1, 1000))


def _ego_features(t, cols, starts, ends) -> dict[str, np.ndarray]:
    n = len(starts)
    w = _window_of(t, starts, ends)
    speed, accel, yaw_rate = cols["speed"], cols["accel"], cols["yaw_rate"]
    finite_speed = np.isfinite(speed)
    speed_sum = np.bincount(w[w >= 0], np.where(finite_speed, speed, 0.0)[w >= 0], minlength=n)
    speed_count = _group_count(w, n, finite_speed)

    # distance: trapezoids between consecutive samples, credited to the left sample's window
    step = np.diff(t) / NS
    trapezoid = 0.5 * (speed[:-1] + speed[1:]) * step
    ok = np.isfinite(trapezoid) & (step <= MAX_GAP_S) & (w[:-1] >= 0)
    distance = np.bincount(w[:-1][ok], trapezoid[ok], minlength=n)

    # jerk over a fixed baseline, credited to the later sample's window
    k = _lag(t, JERK_BASELINE_S)
    jerk = np.full(t.size, np.nan)
    if t.size > k:
        dt = (t[k:] - t[:-k]) / NS
        with np.errstate(invalid="ignore", divide="ignore"):
            jerk[k:] = np.where(dt <= MAX_GAP_S, np.abs(accel[k:] - accel[:-k]) / dt, np.nan)

    min_accel = _group_min(w, accel, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_speed = np.where(speed_count > 0, speed_sum / np.maximum(speed_count, 1), np.nan)
    return {
        "n_ego_samples": _group_count(w, n),
        "max_speed": _group_max(w, speed, n),
        "mean_speed": mean_speed,
        "distance_m": np.where(speed_count > 0, distance, np.nan),
        "min_accel": min_accel,
        "max_decel": np.where(
            np.isnan(min_accel), np.nan, np.fmax(-min_accel, 0.0) + 0.0
        ),  # no -0.0
        "max_jerk": _group_max(w, jerk, n),
        "max_abs_yaw_rate": _group_max(w, np.abs(yaw_rate), n),
        "max_lateral_accel": _group_max(w, np.abs(speed * yaw_rate), n),
    }


# --- object features ---------------------------------------------------------------------------


def _object_arrays(objects: pa.Table | None, starts, ends) -> dict[str, np.ndarray] | None:
    """Object rows inside some window, sorted by time, as numpy arrays with integer codes."""
    if objects is None or objects.num_rows == 0 or "t_ns" not in objects.column_names:
        return None
    objects, t = _times(objects)
    w = _window_of(t, starts, ends)
    keep = w >= 0
    if "score" in objects.column_names:
        score = _float(objects, "score")
        keep &= ~(score < MIN_SCORE)  # NaN (no score logged) is kept
    if not keep.any():
        return None
    objects = objects.filter(pa.array(keep))
    t, w = t[keep], w[keep]
    x, y = _float(objects, "x"), _float(objects, "y")
    distance = _float(objects, "distance")
    distance = np.where(np.isfinite(distance), distance, np.hypot(x, y))

    if "category" in objects.column_names:
        category = objects.column("category").cast(pa.string())
        category = pc.utf8_lower(pc.utf8_trim_whitespace(category))
        category = pc.if_else(pc.equal(category, ""), UNKNOWN_CATEGORY, category)
        category = pc.fill_null(category, UNKNOWN_CATEGORY).to_numpy(zero_copy_only=False)
    else:
        category = np.full(t.size, UNKNOWN_CATEGORY, dtype=object)
    # codes in lexicographic order, so sorting codes sorts names
    names, cat = np.unique(category.astype(str), return_inverse=True)

    if "track_id" in objects.column_names:
        track_ids = objects.column("track_id").cast(pa.string())
        tracked = pc.fill_null(pc.not_equal(track_ids, ""), False).to_numpy(zero_copy_only=False)
        codes = pc.fill_null(track_ids, "").combine_chunks().dictionary_encode().indices
        track = np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.int64)
    else:
        tracked = np.zeros(t.size, bool)
        track = np.zeros(t.size, np.int64)
    track = _untracked_ids(t, cat, y, track, tracked)
    return {
        "t": t, "w": w, "x": x, "y": y, "distance": distance,
        "names": names, "cat": cat, "track": track, "tracked": tracked,
    }  # fmt: skip


def _curvature(ego_t: np.ndarray, ego_cols: dict[str, np.ndarray]) -> np.ndarray:
    """Path curvature (1/m) per ego sample from the smoothed yaw rate; 0 when slow or unknown."""
    speed, yaw_rate = ego_cols["speed"], ego_cols.get("yaw_rate")
    if yaw_rate is None or ego_t.size == 0:
        return np.zeros(speed.size)
    rate = np.where(np.isfinite(yaw_rate), yaw_rate, 0.0)
    # centred moving average over PATH_SMOOTH_S via cumulative sums (irregular sampling is fine)
    cumulative = np.concatenate([[0.0], np.cumsum(rate)])
    half = int(PATH_SMOOTH_S * NS / 2)
    lo = np.searchsorted(ego_t, ego_t - half, side="left")
    hi = np.searchsorted(ego_t, ego_t + half, side="right")
    smooth = (cumulative[hi] - cumulative[lo]) / np.maximum(hi - lo, 1)
    smooth = np.where(np.abs(smooth) < PATH_MIN_YAW_RATE, 0.0, smooth)
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = np.where(speed > PATH_MIN_SPEED, smooth / speed, 0.0)
    return np.where(np.isfinite(kappa), kappa, 0.0)


def _ego_at(t: np.ndarray, ego_t: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`values` (one per ego sample) interpolated at times `t`; 0 where nothing is known."""
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(t.size)
    rel = (ego_t[finite] - ego_t[0]).astype(np.float64)
    return np.interp((t - ego_t[0]).astype(np.float64), rel, values[finite])


def _untracked_ids(t, cat, y, track, tracked) -> np.ndarray:
    """Give detections without a track id stand-in ids: the k-th such detection of a category
    in a frame becomes "track k" of that category, so distinct counts per window are the
    largest number seen at once (a lower bound) rather than one per detection."""
    track = track.copy()
    loose = np.flatnonzero(~tracked)
    if loose.size:
        order = loose[np.lexsort((y[loose], cat[loose], t[loose]))]
        new_group = np.ones(order.size, bool)
        new_group[1:] = (t[order][1:] != t[order][:-1]) | (cat[order][1:] != cat[order][:-1])
        first = np.maximum.accumulate(np.where(new_group, np.arange(order.size), 0))
        rank = np.arange(order.size) - first
        base = int(track.max()) + 1 if track.size else 0
        track[order] = base + rank * (int(cat.max()) + 1) + cat[order]
    return track


def _distinct(w: np.ndarray, key: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    """Distinct `key` values per window among rows where `mask` holds."""
    if not mask.any():
        return np.zeros(n, np.int64)
    span = int(key.max()) + 1
    pairs = np.unique(w[mask] * span + key[mask])
    return np.bincount(pairs // span, minlength=n).astype(np.int64)


def _track_velocity(o: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-row (vx, vy) in the ego frame from each track's positions ~VELOCITY_BASELINE_S
    apart (NaN for the first samples of a track, across gaps, and for untracked rows)."""
    t, track = o["t"], o["track"]
    vx = np.full(t.size, np.nan)
    vy = np.full(t.size, np.nan)
    order = np.lexsort((t, track))
    ts, tr = t[order], track[order]
    k = _lag(ts, VELOCITY_BASELINE_S, same=tr[1:] == tr[:-1])
    if ts.size <= k:
        return vx, vy
    later, earlier = order[k:], order[:-k]
    dt = (ts[k:] - ts[:-k]) / NS
    ok = (tr[k:] == tr[:-k]) & (dt > 0) & (dt <= MAX_GAP_S) & o["tracked"][later]
    vx[later[ok]] = (o["x"][later[ok]] - o["x"][earlier[ok]]) / dt[ok]
    vy[later[ok]] = (o["y"][later[ok]] - o["y"][earlier[ok]]) / dt[ok]
    return vx, vy


def _object_features(o, ego_t, ego_cols, n) -> dict[str, np.ndarray]:
    zeros = np.zeros(n, np.int64)
    nan = np.full(n, np.nan)
    flags = {name: np.zeros(n, bool) for name in ("near_miss", "pedestrian", "cyclist", "cut_in")}
    if o is None:
        counts = {col: zeros for col in ("n_objects", "n_tracks", "n_vehicles", "n_other")}
        counts |= {col: zeros for col in CATEGORY_COLUMNS}
        return counts | {
            "min_object_distance": nan,
            "n_in_path": zeros,
            "min_in_path_distance": nan,
            "min_ttc_s": nan,
            "max_track_lateral_speed": nan,
            "categories": (np.zeros(n + 1, np.int32), np.empty(0, dtype=object)),
            "_flags": flags,
        }
    w, x, y, track, cat, names = o["w"], o["x"], o["y"], o["track"], o["cat"], o["names"]
    name_of = names[cat]
    everything = np.ones(w.size, bool)
    is_vehicle = np.isin(name_of, list(VEHICLES))
    out: dict[str, object] = {
        "n_objects": _group_count(w, n),
        "n_tracks": _distinct(w, track, everything, n),
        "n_vehicles": _distinct(w, track, is_vehicle, n),
        "n_other": _distinct(w, track, ~np.isin(name_of, list(KNOWN_CATEGORIES)), n),
        "min_object_distance": _group_min(w, o["distance"], n),
    }
    for column, category in CATEGORY_COLUMNS.items():
        out[column] = _distinct(w, track, name_of == category, n)

    ego_speed = ego_cols["speed"]
    curvature = _ego_at(o["t"], ego_t, _curvature(ego_t, ego_cols))
    path_y = 0.5 * curvature * x * x  # the arc the ego drives, to second order
    lateral = y - path_y  # offset from the ego's path, not from its heading
    in_path = (np.abs(lateral) < PATH_HALF_WIDTH_M) & (x > 0) & (x < PATH_LENGTH_M)
    out["n_in_path"] = _distinct(w, track, in_path, n)
    out["min_in_path_distance"] = _group_min(w, np.where(in_path, x, np.nan), n)

    vx, vy = _track_velocity(o)
    closing = -vx  # x shrinking: the object comes towards the ego
    with np.errstate(invalid="ignore", divide="ignore"):
        ttc = np.where(in_path & (closing > MIN_CLOSING_SPEED), x / closing, np.nan)
    out["min_ttc_s"] = _group_min(w, ttc, n)
    nearby = o["distance"] < NEARBY_M
    out["max_track_lateral_speed"] = _group_max(w, np.where(nearby, np.abs(vy), np.nan), n)

    # near miss: closing fast, or very close in the path while the ego is moving
    speed_then = _ego_at(o["t"], ego_t, ego_speed)
    close = in_path & (x < NEAR_MISS_DISTANCE_M) & (speed_then > NEAR_MISS_MIN_SPEED)
    with np.errstate(invalid="ignore"):
        flags["near_miss"] = (out["min_ttc_s"] < NEAR_MISS_TTC_S) | (_group_count(w, n, close) > 0)
    flags["pedestrian"] = _group_count(w, n, in_path & (name_of == "pedestrian")) > 0
    flags["cyclist"] = _group_count(w, n, in_path & (name_of == "cyclist")) > 0
    flags["cut_in"] = _cut_in(w, track, x, lateral, is_vehicle, n)

    # sorted distinct categories per window, as list offsets + values
    pairs = np.unique(w * len(names) + cat)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(np.bincount(pairs // len(names), minlength=n), out=offsets[1:])
    out["categories"] = (offsets, names[pairs % len(names)])
    out["_flags"] = flags
    return out


def _cut_in(w, track, x, y, is_vehicle, n) -> np.ndarray:
    """A vehicle track first seen beside the ego lane, later in it a short distance ahead."""
    ay = np.abs(y)
    outside = is_vehicle & (ay > CUT_IN_OUTSIDE_M) & (np.abs(x) < PATH_LENGTH_M)
    inside = is_vehicle & (ay < CUT_IN_INSIDE_M) & (x > 0) & (x < CUT_IN_AHEAD_M)
    if not (outside.any() and inside.any()):
        return np.zeros(n, bool)
    # rows are in time order, so row position orders events within a (window, track) group
    span = int(track.max()) + 1
    groups, gid = np.unique(w * span + track, return_inverse=True)
    position = np.arange(w.size, dtype=np.float64)
    first_outside = np.full(groups.size, np.inf)
    np.minimum.at(first_outside, gid[outside], position[outside])
    last_inside = np.full(groups.size, -np.inf)
    np.maximum.at(last_inside, gid[inside], position[inside])
    hit = groups[first_outside < last_inside] // span
    return np.bincount(hit, minlength=n) > 0


# --- place, time, camera -------------------------------------------------------------------------


def _place_and_time(gnss: pa.Table | None, starts, ends) -> dict[str, np.ndarray]:
    n = len(starts)
    lat = lon = np.full(n, np.nan)
    log_lon = np.nan
    if gnss is not None and gnss.num_rows and "t_ns" in gnss.column_names:
        gnss, t = _times(gnss)
        glat, glon = _float(gnss, "lat"), _float(gnss, "lon")
        status = _float(gnss, "status")
        # NavSatFix status -1 is "no fix"; (0, 0) is what receivers send before their first fix
        valid = (
            np.isfinite(glat) & np.isfinite(glon) & (np.abs(glat) <= 90) & (np.abs(glon) <= 180)
            & ~((glat == 0) & (glon == 0)) & ~(status < 0)
        )  # fmt: skip
        w = np.where(valid, _window_of(t, starts, ends), -1)
        count = _group_count(w, n)
        with np.errstate(invalid="ignore", divide="ignore"):
            lat = np.bincount(w[w >= 0], glat[w >= 0], minlength=n) / count
            lon = np.bincount(w[w >= 0], glon[w >= 0], minlength=n) / count
        lat[count == 0] = lon[count == 0] = np.nan
        if valid.any():
            log_lon = float(np.mean(glon[valid]))
    utc_hour = (starts // NS % 86_400) / 3600.0
    # solar time: 15° of longitude per hour; windows without a fix use the log's mean longitude
    offset = np.where(np.isfinite(lon), lon, log_lon) / 15.0
    hour = np.mod(utc_hour + np.nan_to_num(offset, nan=0.0), 24.0)
    # night needs the place: without any fix, UTC is not the local time (a 1970 clock or a
    # robot's uptime would all read as night), so is_night is null and there is no tag
    placed = np.isfinite(offset)
    night = placed & ((hour < NIGHT_END_HOUR) | (hour >= NIGHT_START_HOUR))
    return {
        "start_hour_local": hour,
        "is_night": pa.array(night, pa.bool_(), mask=~placed),
        "_night": night,
        "lat": lat,
        "lon": lon,
    }


def _keyframes(camera: pa.Table | None, starts, ends) -> pa.Array:
    n = len(starts)
    if camera is None or camera.num_rows == 0 or "t_ns" not in camera.column_names:
        return pa.nulls(n, pa.int64())
    _, t = _times(camera)
    first = np.searchsorted(t, starts, side="left")
    found = first < np.searchsorted(t, ends, side="left")
    values = t[np.minimum(first, max(t.size - 1, 0))] if t.size else np.zeros(n, np.int64)
    return pa.array(values, pa.int64(), mask=~found)


# --- tags and the table ------------------------------------------------------------------------


def _tags(f: dict) -> tuple[np.ndarray, np.ndarray]:
    flags = f["_flags"]
    with np.errstate(invalid="ignore"):  # NaN compares False: no data, no tag
        columns = {
            "hard_brake": f["min_accel"] < HARD_BRAKE_ACCEL,
            "near_miss": flags["near_miss"],
            "pedestrian_in_path": flags["pedestrian"],
            "cyclist_in_path": flags["cyclist"],
            "cut_in": flags["cut_in"],
            "animal": f["n_animals"] > 0,
            "unknown_object": f["n_other"] > 0,
            "stopped": f["max_speed"] < STOPPED_SPEED,
            "high_speed": f["max_speed"] > HIGH_SPEED,
            "sharp_turn": f["max_abs_yaw_rate"] > SHARP_TURN_YAW_RATE,
            "night": f["_night"],
        }
    matrix = np.column_stack([np.asarray(columns[tag], bool) for tag in TAGS])
    offsets = np.zeros(matrix.shape[0] + 1, np.int32)
    np.cumsum(matrix.sum(axis=1), out=offsets[1:])
    values = np.tile(np.array(TAGS, dtype=object), matrix.shape[0])[matrix.ravel()]
    return offsets, values


def _to_table(columns: dict) -> pa.Table:
    arrays = []
    for field in SCENES_SCHEMA:
        value = columns[field.name]
        if isinstance(value, pa.Array):
            arrays.append(value.cast(field.type))
        elif pa.types.is_list(field.type):
            offsets, values = value
            flat = pa.array(values.tolist(), pa.string())
            arrays.append(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), flat))
        elif pa.types.is_floating(field.type):
            data = np.asarray(value, np.float64)
            arrays.append(pa.array(data, field.type, mask=~np.isfinite(data)))
        else:
            arrays.append(pa.array(value, field.type))
    return pa.Table.from_arrays(arrays, schema=SCENES_SCHEMA)
