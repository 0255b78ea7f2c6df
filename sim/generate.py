"""Synthetic ROS 2 drive logs (MCAP, CDR) with planted events, and their ground truth.

Each log is a drive along a generated road (straight stretches, gentle curves), urban or
highway, simulated at 10 Hz in road (Frenet) coordinates so that positions, yaw, speed and
yaw rate agree. Background traffic, parked cars, pedestrians and cyclists are placed on the
same road; planted events (hard_brake, pedestrian_crossing, cut_in, animal, unknown_object)
are scripted so the ego reacts to them. `truth.json` names every planted event.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as out:
...     [p.name for p in generate(out, logs=2, seconds=10.0)]
['drive_0000.mcap', 'drive_0001.mcap']
"""

from __future__ import annotations

import datetime as dt
import json
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mcap.writer import CompressionType
from mcap_ros2.writer import Writer

from ingest.msg import concatenated
from ingest.scenes import HARD_BRAKE_ACCEL
from ingest.signals import PATH_HALF_WIDTH_M

__all__ = ["GENERATOR_VERSION", "TOPICS", "TRIGGERS", "WINDOWS", "generate"]

GENERATOR_VERSION = "flywheel-generate-2"  # 2: events are their observable windows
HZ = 10
DT = 1.0 / HZ
FRAME_NS = 1_000_000_000 // HZ
RANGE_M = 80.0  # perception range (radius around the ego)
EPOCH_2026_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01T00:00:00Z
EGO_LENGTH = 4.8
JERK_DOWN, JERK_UP = 12.0, 10.0  # m/s^3: how fast the ego's acceleration can change
# Only a hard brake brakes harder than HARD_BRAKE_ACCEL; every other reaction stays under this.
MAX_OTHER_BRAKE = -3.8
# A cut-in's window: the ego braking harder than this while the car is in its path.
CUT_IN_BRAKE = -2.0

TOPICS = {
    "/odom": "nav_msgs/msg/Odometry",
    "/gnss/fix": "sensor_msgs/msg/NavSatFix",
    "/perception/objects": "vision_msgs/msg/Detection3DArray",
    "/camera/front/compressed": "sensor_msgs/msg/CompressedImage",
}
COMMON_KINDS = ("hard_brake", "pedestrian_crossing", "cut_in")
RARE_KINDS = ("animal", "unknown_object")
# What every run of the default size must contain (and smaller runs get first, in this order).
_REQUIRED = (*COMMON_KINDS, *RARE_KINDS, *COMMON_KINDS)
_KIND_WEIGHTS = {
    "hard_brake": 0.3,
    "pedestrian_crossing": 0.3,
    "cut_in": 0.3,
    "animal": 0.05,
    "unknown_object": 0.05,
}
# (length, width, height) mean and relative spread, metres.
_SIZES = {
    "car": ((4.6, 1.85, 1.5), 0.07),
    "truck": ((9.0, 2.5, 3.4), 0.2),
    "bus": ((12.0, 2.55, 3.1), 0.05),
    "motorcycle": ((2.1, 0.8, 1.4), 0.08),
    "pedestrian": ((0.6, 0.6, 1.72), 0.08),
    "cyclist": ((1.8, 0.65, 1.7), 0.06),
    "animal": ((1.7, 0.5, 1.3), 0.15),
    "unknown": ((0.8, 0.7, 0.4), 0.35),
}
# Real city centres (lat, lon, alt); each log starts near one of them.
_CITIES = (
    (37.7749, -122.4194, 16.0),  # San Francisco
    (40.4406, -79.9959, 270.0),  # Pittsburgh
    (48.1351, 11.5820, 519.0),  # Munich
    (35.6762, 139.6503, 40.0),  # Tokyo
    (1.3521, 103.8198, 15.0),  # Singapore
    (42.3601, -71.0589, 10.0),  # Boston
    (33.4484, -112.0740, 331.0),  # Phoenix
    (59.3293, 18.0686, 28.0),  # Stockholm
)

# --- message definitions, as ROS 2 (rosbag2) embeds them ---------------------------------------
_HEADER = """\
# Standard metadata for higher-level stamped data types.
# This is generally used to communicate timestamped data
# in a particular coordinate frame.

# Two-integer timestamp that is expressed as seconds and nanoseconds.
builtin_interfaces/Time stamp

# Transform frame with which this data is associated.
string frame_id
"""
_TIME = """\
# This message communicates ROS Time defined here:
# https://design.ros2.org/articles/clock_and_time.html

# The seconds component, valid over all int32 values.
int32 sec

# The nanoseconds component, valid in the range [0, 1e9), to be added to the seconds component.
# e.g.
# The time -1.7 seconds is represented as {sec: -2, nanosec: 3e8}
# The time 1.7 seconds is represented as {sec: 1, nanosec: 7e8}
uint32 nanosec
"""
_COVARIANCE_6 = """
# Row-major representation of the 6x6 covariance matrix
# The orientation parameters use a fixed-axis representation.
# In order, the parameters are:
# (x, y, z, rotation about X axis, rotation about Y axis, rotation about Z axis)
float64[36] covariance
"""
_MSGS: dict[str, str] = {
    "builtin_interfaces/Time": _TIME,
    "std_msgs/Header": _HEADER,
    "geometry_msgs/Point": (
        "# This contains the position of a point in free space\nfloat64 x\nfloat64 y\nfloat64 z\n"
    ),
    "geometry_msgs/Quaternion": (
        "# This represents an orientation in free space in quaternion form.\n\n"
        "float64 x 0\nfloat64 y 0\nfloat64 z 0\nfloat64 w 1\n"
    ),
    "geometry_msgs/Vector3": (
        "# This represents a vector in free space.\n\n"
        "# This is semantically different than a point.\n"
        "# A vector is always anchored at the origin.\n"
        "# When a transform is applied to a vector, only the rotational component is applied.\n\n"
        "float64 x\nfloat64 y\nfloat64 z\n"
    ),
    "geometry_msgs/Pose": (
        "# A representation of pose in free space, composed of position and orientation.\n\n"
        "Point position\nQuaternion orientation\n"
    ),
    "geometry_msgs/PoseWithCovariance": (
        "# This represents a pose in free space with uncertainty.\n\nPose pose\n" + _COVARIANCE_6
    ),
    "geometry_msgs/Twist": (
        "# This expresses velocity in free space broken into its linear and angular parts.\n\n"
        "Vector3  linear\nVector3  angular\n"
    ),
    "geometry_msgs/TwistWithCovariance": (
        "# This expresses velocity in free space with uncertainty.\n\nTwist twist\n" + _COVARIANCE_6
    ),
    "nav_msgs/Odometry": """\
# This represents an estimate of a position and velocity in free space.
# The pose in this message should be specified in the coordinate frame given by header.frame_id
# The twist in this message should be specified in the coordinate frame given by the child_frame_id

# Includes the frame id of the pose parent.
std_msgs/Header header

# Frame id the pose points to. The twist is in this coordinate frame.
string child_frame_id

# Estimated pose that is typically relative to a fixed world frame.
geometry_msgs/PoseWithCovariance pose

# Estimated linear and angular velocity relative to child_frame_id.
geometry_msgs/TwistWithCovariance twist
""",
    "sensor_msgs/NavSatStatus": """\
# Navigation Satellite fix status for any Global Navigation Satellite System.
#
# Whether to output an augmented fix is determined by both the fix
# type and the last time differential corrections were received.  A
# fix is valid when status >= STATUS_FIX.

int8 STATUS_UNKNOWN = -2        # status is not yet set
int8 STATUS_NO_FIX =  -1        # unable to fix position
int8 STATUS_FIX =      0        # unaugmented fix
int8 STATUS_SBAS_FIX = 1        # with satellite-based augmentation
int8 STATUS_GBAS_FIX = 2        # with ground-based augmentation

int8 status -2 # STATUS_UNKNOWN

# Bits defining which Global Navigation Satellite System signals were
# used by the receiver.

uint16 SERVICE_UNKNOWN = 0  # Remember service is a bitfield, so checking (service & SERVICE_UNKNOWN) will not work. Use == instead.
uint16 SERVICE_GPS =     1
uint16 SERVICE_GLONASS = 2
uint16 SERVICE_COMPASS = 4      # includes BeiDou.
uint16 SERVICE_GALILEO = 8

uint16 service
""",  # noqa: E501  (the upstream file has this long line)
    "sensor_msgs/NavSatFix": """\
# Navigation Satellite fix for any Global Navigation Satellite System
#
# Specified using the WGS 84 reference ellipsoid

# header.stamp specifies the ROS time for this measurement (the
#        corresponding satellite time may be reported using the
#        sensor_msgs/TimeReference message).
#
# header.frame_id is the frame of reference reported by the satellite
#        receiver, usually the location of the antenna.  This is a
#        Euclidean frame relative to the vehicle, not a reference
#        ellipsoid.
std_msgs/Header header

# Satellite fix status information.
NavSatStatus status

# Latitude [degrees]. Positive is north of equator; negative is south.
float64 latitude

# Longitude [degrees]. Positive is east of prime meridian; negative is west.
float64 longitude

# Altitude [m]. Positive is above the WGS 84 ellipsoid
# (quiet NaN if no altitude is available).
float64 altitude

# Position covariance [m^2] defined relative to a tangential plane
# through the reported position. The components are East, North, and
# Up (ENU), in row-major order.
#
# Beware: this coordinate system exhibits singularities at the poles.
float64[9] position_covariance

# If the covariance of the fix is known, fill it in completely. If the
# GPS receiver provides the variance of each measurement, put them
# along the diagonal. If only Dilution of Precision is available,
# estimate an approximate covariance from that.

uint8 COVARIANCE_TYPE_UNKNOWN = 0
uint8 COVARIANCE_TYPE_APPROXIMATED = 1
uint8 COVARIANCE_TYPE_DIAGONAL_KNOWN = 2
uint8 COVARIANCE_TYPE_KNOWN = 3

uint8 position_covariance_type
""",
    "sensor_msgs/CompressedImage": """\
# This message contains a compressed image.

std_msgs/Header header # Header timestamp should be acquisition time of image
                             # Header frame_id should be optical frame of camera
                             # origin of frame should be optical center of cameara
                             # +x should point to the right in the image
                             # +y should point down in the image
                             # +z should point into to plane of the image

string format                # Specifies the format of the data
                             #   Acceptable values:
                             #     jpeg, png, tiff

uint8[] data                 # Compressed image buffer
""",
    "vision_msgs/Detection3DArray": """\
# A list of 3D detections, for a multi-object 3D detector.

std_msgs/Header header

# A list of the detected proposals. A multi-proposal detector might generate
#   this list with many candidate detections generated from a single input.
Detection3D[] detections
""",
    "vision_msgs/Detection3D": """\
# Defines a 3D detection result.
#
# This extends a basic 3D classification by including the pose of the
# detected object.

std_msgs/Header header

# Class probabilities. Does not have to include hypotheses for all possible
#   object ids, the scores for any ids not listed are assumed to be 0.
ObjectHypothesisWithPose[] results

# 3D bounding box surrounding the object.
BoundingBox3D bbox

# ID used for consistency across multiple detection messages. Detections
# of the same object in different detection messages should have the same id.
# This field may be empty.
string id
""",
    "vision_msgs/ObjectHypothesisWithPose": """\
# An object hypothesis that contains pose information.
# If you would like to define an array of ObjectHypothesisWithPose messages,
#   please see the Detection2D or Detection3D message types.

# The object hypothesis (ID and score).
ObjectHypothesis hypothesis

# The 6D pose of the object hypothesis. This pose should be
#   defined as the pose of some fixed reference point on the object, such as
#   the geometric center of the bounding box, the center of mass of the
#   object or the origin of a reference mesh of the object.
# Note that this pose is not stamped; frame information can be defined by
#   parent messages.
# Also note that different classes predicted for the same input data may have
#   different predicted 6D poses.
geometry_msgs/PoseWithCovariance pose
""",
    "vision_msgs/ObjectHypothesis": """\
# An object hypothesis that contains no pose information.
# If you would like to define an array of ObjectHypothesis messages,
#   please see the Classification message type.

# The unique ID of the object class. To get additional information about
#   this ID, such as its human-readable class name, listeners should perform a
#   lookup in a metadata database. See vision_msgs/VisionInfo.msg for more detail.
string class_id

# The probability or confidence value of the detected object. By convention,
#   this value should lie in the range [0-1].
float64 score
""",
    "vision_msgs/BoundingBox3D": """\
# A 3D bounding box that can be positioned and rotated about its center (6 DOF)
# Dimensions of this box are in meters, and as such, it may be migrated to
#   another package, such as geometry_msgs, in the future.

# The 3D position and orientation of the bounding box center
geometry_msgs/Pose center

# The total size of the bounding box, in meters, surrounding the object's center
#   pose.
geometry_msgs/Vector3 size
""",
}


def schema_text(msgtype: str) -> str:
    """The ros2msg schema text of `msgtype` with its dependencies, as rosbag2 writes it
    (ingest.msg, the grammar ingest reads it with).

    >>> schema_text("sensor_msgs/msg/NavSatFix").count("MSG: ")
    3
    """
    return concatenated(msgtype, _MSGS)


# --- the road ----------------------------------------------------------------------------------
@dataclass
class _Road:
    """A centerline sampled every `ds` metres from arc length `s0`: x, y (ENU) and heading."""

    s0: float
    ds: float
    x: np.ndarray
    y: np.ndarray
    heading: np.ndarray
    kappa: np.ndarray

    def at(self, s: np.ndarray, d: np.ndarray | float) -> tuple[np.ndarray, ...]:
        """World x, y and road heading at arc length `s` and lateral offset `d` (left +)."""
        i = (np.asarray(s, dtype=float) - self.s0) / self.ds
        grid = np.arange(len(self.x), dtype=float)
        h = np.interp(i, grid, self.heading)
        x = np.interp(i, grid, self.x) - d * np.sin(h)
        y = np.interp(i, grid, self.y) + d * np.cos(h)
        return x, y, h

    def curvature(self, s: np.ndarray) -> np.ndarray:
        return np.interp((s - self.s0) / self.ds, np.arange(len(self.kappa)), self.kappa)


def _make_road(rng: np.random.Generator, s_from: float, s_to: float, highway: bool) -> _Road:
    ds = 0.5
    n = int((s_to - s_from) / ds) + 1
    kappa = np.zeros(n)
    i = int(rng.uniform(60, 200) / ds)  # start on a straight stretch
    while i < n:
        if highway:
            length, radius = rng.uniform(200, 600), rng.uniform(700, 2000)
        else:
            length, radius = rng.uniform(40, 140), rng.uniform(90, 260)
        j = min(n, i + int(length / ds))
        kappa[i:j] = rng.choice((-1.0, 1.0)) / radius
        i = j + int(rng.uniform(*((300, 1500) if highway else (80, 400))) / ds)
    # Ease in and out of the curves (a cheap clothoid): curvature changes over tens of metres.
    window = int((80 if highway else 25) / ds)
    kappa = np.convolve(kappa, np.ones(window) / window, mode="same")
    heading = rng.uniform(-math.pi, math.pi) + np.concatenate(([0.0], np.cumsum(kappa[:-1] * ds)))
    x = np.concatenate(([0.0], np.cumsum(np.cos(heading[:-1]) * ds)))
    y = np.concatenate(([0.0], np.cumsum(np.sin(heading[:-1]) * ds)))
    k0 = int(-s_from / ds)  # put s = 0 at the world origin (where the odom frame starts)
    return _Road(s_from, ds, x - x[k0], y - y[k0], heading, kappa)


# --- plans: regimes, event slots, kinds ----------------------------------------------------------
@dataclass
class _Event:
    kind: str
    t: float  # when the ego starts reacting (s since log start)
    start: float = 0.0
    end: float = 0.0
    track_id: str | None = None
    info: dict | None = None
    scenario: tuple[float, float] = (0.0, 0.0)  # from its cause to the ego's recovery


@dataclass
class _LogPlan:
    index: int
    highway: bool
    slots: list[float]
    events: list[_Event]
    start_ns: int
    city: tuple[float, float, float]


def _plan(logs: int, seconds: float, seed: int, day0: dt.date | None = None) -> list[_LogPlan]:
    rng = np.random.Generator(np.random.PCG64(seed))
    # Regimes: mostly urban; with two or more logs at least one of each.
    highway = [bool(rng.random() < 0.35) for _ in range(logs)]
    if logs >= 2 and all(highway):
        highway[int(rng.integers(logs))] = False
    if logs >= 2 and not any(highway):
        highway[int(rng.integers(logs))] = True
    # Start times spread over the local (solar) day; with >= 3 logs one always falls at night
    # (21:00-05:00 local), so day and night scenes both exist.
    phase = rng.uniform(0, 24)
    plans = []
    for i in range(logs):
        city = _CITIES[int(rng.integers(len(_CITIES)))]
        city = (city[0] + rng.uniform(-0.03, 0.03), city[1] + rng.uniform(-0.03, 0.03), city[2])
        local_hour = (phase + 24.0 * i / max(logs, 1) + rng.uniform(-0.5, 0.5)) % 24
        hour = (local_hour - city[1] / 15.0) % 24  # solar time: 15 degrees of longitude an hour
        day = int(rng.integers(0, 365))  # drawn even when unused: same data for any `day0`
        base_ns = EPOCH_2026_NS + day * 86_400 * 10**9
        if day0 is not None:
            base_ns = int(dt.datetime.combine(day0, dt.time(), dt.UTC).timestamp()) * 10**9
        start_ns = base_ns + int(hour * 3600 * 1e3) * 10**6
        start_ns += int(rng.integers(0, 10**9))
        slots = []
        t = rng.uniform(12, 18)
        while t + 12 <= seconds:
            slots.append(float(t))
            t += rng.uniform(28, 48) if highway[i] else rng.uniform(36, 58)  # room for stops
        plans.append(_LogPlan(i, highway[i], slots, [], start_ns, city))
    # Kinds: the required ones first, on random slots that suit them, then weighted draws.
    free = [(p.index, t) for p in plans for t in p.slots]
    free = [free[k] for k in rng.permutation(len(free))]
    chosen: list[tuple[int, float, str]] = []
    for kind in _REQUIRED:
        fits = [f for f in free if kind != "pedestrian_crossing" or not plans[f[0]].highway]
        if fits:
            free.remove(fits[0])
            chosen.append((fits[0][0], fits[0][1], kind))
    for log, t in free:
        kinds = [k for k in _KIND_WEIGHTS if k != "pedestrian_crossing" or not plans[log].highway]
        weights = np.array([_KIND_WEIGHTS[k] for k in kinds])
        chosen.append((log, t, kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]))
    for log, t, kind in sorted(chosen):
        plans[log].events.append(_Event(kind, t))
    return plans


# --- the ego -------------------------------------------------------------------------------------
@dataclass
class _Maneuver:
    """Brake at `accel` down to `v_goal`, then hold that speed until `hold_until`."""

    t: float
    accel: float
    v_goal: float
    hold_until: float
    event: _Event | None = None


def _simulate_ego(rng, plan: _LogPlan, steps: int) -> tuple[np.ndarray, ...]:
    """Speed, acceleration and arc length of the ego at 10 Hz (a kinematic model along the road)."""
    lo, hi = (24.0, 30.0) if plan.highway else (8.0, 14.0)
    # Cruise speed: changes every 15-40 s.
    target = np.empty(steps)
    i = 0
    while i < steps:
        j = min(steps, i + int(rng.uniform(15, 40) * HZ))
        target[i:j] = rng.uniform(lo, hi)
        i = j
    # Gentle stops (traffic lights) in the urban stretches between events.
    stops: list[_Maneuver] = []
    if not plan.highway:
        edges = [0.0] + [x for e in plan.events for x in (e.t - 3.0, e.t + 12.0)] + [1e9]
        gaps = [(a, min(b, steps * DT - 12)) for a, b in zip(edges[0::2], edges[1::2], strict=True)]
        gaps = [(a, b) for a, b in gaps if b - a >= 18]
        # Every urban drive long enough has at least one; most gaps get one.
        chosen = [g for g in gaps if rng.random() < 0.8] or sorted(gaps, key=lambda g: g[0] - g[1])[
            :1
        ]
        for a, b in chosen:
            t = a + rng.uniform(0.5, b - a - 17.5)
            stops.append(_Maneuver(t, -rng.uniform(1.2, 2.0), 0.0, rng.uniform(1.5, 4.0)))
    maneuvers = sorted([*stops, *(_Maneuver(e.t, 0, 0, 0, e) for e in plan.events)], key=_t)
    v = np.empty(steps)
    a = np.zeros(steps)
    v[0] = target[0]
    current: _Maneuver | None = None
    braking = False
    accel = 0.0
    for i in range(steps):
        t = i * DT
        if current is None and maneuvers and t >= maneuvers[0].t:
            current = maneuvers.pop(0)
            _arm(rng, current, v[i], t)
            braking = True
        if current is not None:
            # Ease off the brake early enough to settle at v_goal (the release is jerk-limited).
            if braking and v[i] - current.v_goal <= accel * accel / 2 / JERK_UP + 0.05:
                braking = False
                if current.event is None:  # a stop: hold for `hold_until` seconds
                    current.hold_until = t + current.hold_until
            command = current.accel if braking else min(1.2, current.v_goal - v[i])
            if not braking and t >= current.hold_until:
                current = None
        if current is None:
            command = float(np.clip(0.35 * (target[i] - v[i]), -1.2, 1.2))
        # Jerk limit: the brake pedal and the engine take a few tenths of a second.
        accel += float(np.clip(command - accel, -JERK_DOWN * DT, JERK_UP * DT))
        if v[i] <= 0.0 and accel < 0:
            accel = 0.0
        a[i] = accel
        if i + 1 < steps:
            v[i + 1] = max(0.0, v[i] + accel * DT)
    s = np.concatenate(([0.0], np.cumsum((v[:-1] + v[1:]) * 0.5 * DT)))
    return v, s


def _t(m: _Maneuver) -> float:
    return m.t


def _arm(rng, m: _Maneuver, v0: float, t: float) -> None:
    """Fill in a planted event's reaction from the ego's speed when it starts."""
    e = m.event
    if e is None:
        return
    e.t, e.start, e.info = t, t - 1.0, {"v0": v0}
    if e.kind == "hard_brake":
        m.accel = -rng.uniform(6.0, 7.5)
        m.v_goal = max(0.0, v0 - rng.uniform(8.0, 14.0)) if v0 > 10 else 0.0
        m.hold_until = t + (v0 - m.v_goal) / -m.accel + 0.5 + rng.uniform(1.0, 2.0)
        e.end = m.hold_until
    elif e.kind in ("pedestrian_crossing", "animal"):
        walk = rng.uniform(1.2, 1.7) if e.kind == "pedestrian_crossing" else rng.uniform(1.0, 2.5)
        side_from = -7.0 if e.kind == "pedestrian_crossing" else -7.5
        curb = -5.5 if e.kind == "pedestrian_crossing" else -4.5
        t_curb = t - 0.7  # the ego reacts 0.7 s after the crosser steps onto the road
        t_clear = t_curb + (2.8 - curb) / walk  # the crosser has left the ego lane
        m.v_goal = 0.0 if e.kind == "pedestrian_crossing" and rng.random() < 0.6 else v0 * 0.35
        # Slow enough to be stopped (or crawling) before the crosser has passed, but no
        # emergency stop: that would be a hard brake.
        needed = (v0 - m.v_goal) / max(t_clear - t - 1.5, 0.5)
        m.accel = max(MAX_OTHER_BRAKE, min(-rng.uniform(2.0, 3.5), -needed))
        m.hold_until = t_clear
        e.start, e.end = t_curb, max(t_clear, t + (v0 - m.v_goal) / -m.accel + 0.5)
        e.info.update(
            walk=walk, t0=t_curb - (curb - side_from) / walk, d0=side_from, t_clear=t_clear
        )
    elif e.kind == "cut_in":
        dv = rng.uniform(2.0, 4.0)
        v_car = max(2.0, v0 - dv)
        m.accel = -rng.uniform(2.5, 3.8)
        m.v_goal = max(0.0, v_car - 1.0)
        m.hold_until = t + 3.5
        e.start, e.end = t - 1.6, t + 3.5
        e.info.update(v_car=v_car, gap=EGO_LENGTH / 2 + rng.uniform(8.0, 12.0))
    elif e.kind == "unknown_object":
        m.accel = -rng.uniform(3.0, -MAX_OTHER_BRAKE)
        m.v_goal = v0 * rng.uniform(0.4, 0.6)
        t_pass = t + (v0 - m.v_goal) / -m.accel + 1.0
        m.hold_until = t_pass + 2.5
        e.start, e.end = t - 1.0, t_pass + 2.5
        e.info.update(t_pass=t_pass, swerve=rng.uniform(2.3, 2.7))


# --- the world's objects -------------------------------------------------------------------------
@dataclass
class _Track:
    track_id: str
    category: str
    size: tuple[float, float, float]
    s: np.ndarray  # arc length along the road, per frame
    d: np.ndarray  # lateral offset from the ego lane centre (left +), per frame
    yaw: np.ndarray | float  # heading relative to the road, rad
    alive: np.ndarray | None = None  # frames where the object exists at all
    keep_clear: bool = False  # planted/lead: background objects in its way are removed


class _World:
    """Builds the tracks of one log."""

    def __init__(self, rng: np.random.Generator, plan: _LogPlan, n: int):
        self.rng, self.plan, self.n = rng, plan, n
        self.tracks: list[_Track] = []
        self.next_id = int(rng.integers(1, 500))

    def new_id(self) -> str:
        self.next_id += int(self.rng.integers(1, 4))  # trackers skip ids (tentative tracks)
        return str(self.next_id)

    def size(self, category: str) -> tuple[float, float, float]:
        mean, spread = _SIZES[category]
        scale = np.clip(1 + spread * self.rng.standard_normal(3), 0.5, 1.8)
        return tuple(float(m * k) for m, k in zip(mean, scale, strict=True))

    def add(self, category: str, s, d, yaw=0.0, alive=None, keep_clear=False) -> _Track:
        s = np.broadcast_to(np.asarray(s, dtype=float), (self.n,))
        d = np.broadcast_to(np.asarray(d, dtype=float), (self.n,))
        track = _Track(self.new_id(), category, self.size(category), s, d, yaw, alive, keep_clear)
        self.tracks.append(track)
        return track


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _vehicle_class(rng, highway: bool) -> str:
    classes = ("car", "truck", "bus", "motorcycle")
    p = (0.74, 0.18, 0.02, 0.06) if highway else (0.8, 0.07, 0.07, 0.06)
    return classes[int(rng.choice(4, p=p))]


def _populate(world: _World, t: np.ndarray, v: np.ndarray, s_ext: np.ndarray, d_ego) -> None:
    """Lead cars, planted-event objects and background traffic on the road."""
    rng, plan, n = world.rng, world.plan, world.n
    s = s_ext[:n]
    lanes_same = (3.5, -3.5) if plan.highway else (3.5,)
    lanes_opposite = (10.5, 14.0) if plan.highway else (7.0,)

    # Planted events.
    for e in plan.events:
        info = e.info or {}
        if e.kind in ("pedestrian_crossing", "animal"):
            ped = e.kind == "pedestrian_crossing"
            i_clear = min(n - 1, round(info["t_clear"] * HZ))
            s_cross = s[i_clear] + EGO_LENGTH / 2 + rng.uniform(2.0, 5.0 if ped else 15.0)
            d = info["d0"] + info["walk"] * (t - info["t0"])
            far = 10.0 if ped else 8.0
            along = np.where(d > far, (d - far) / info["walk"], 0.0) * 1.2  # walks on along
            before = np.minimum(t - info["t0"], 0.0) * (1.3 if ped else 0.0)
            track = world.add(
                "pedestrian" if ped else "animal",
                s_cross + along + before,
                np.clip(d, info["d0"], far),
                np.where((d > info["d0"]) & (d < far), math.pi / 2, 0.0),
                alive=None if ped else (d > info["d0"] - 1.5) & (d < far),
                keep_clear=True,
            )
            info["s"] = s_cross
        elif e.kind == "cut_in":
            side = float(rng.choice(lanes_same))
            i_b = round(e.t * HZ)
            t_rel = t - e.t
            lateral = side * (1 - _smoothstep((t_rel + 1.6) / 2.5))
            v_car = info["v_car"] + np.clip(t_rel - 2.5, 0, None) * 1.5
            v_car = np.minimum(v_car, info["v_car"] + 8.0)
            s_car = np.concatenate(([0.0], np.cumsum((v_car[:-1] + v_car[1:]) * 0.5 * DT)))
            s_car += s[i_b] + info["gap"] - s_car[i_b]
            heading = np.arctan2(np.gradient(lateral, DT), np.maximum(v_car, 1.0))
            track = world.add(
                _vehicle_class(rng, plan.highway) if rng.random() < 0.3 else "car",
                s_car,
                lateral,
                heading,
                alive=t_rel < 10.0,  # it turns off the road a while later
                keep_clear=True,
            )
        elif e.kind == "unknown_object":
            i_pass = min(n - 1, round(info["t_pass"] * HZ))
            track = world.add("unknown", s[i_pass], rng.uniform(-0.4, 0.4), rng.uniform(0, 3))
            track.keep_clear = True
        else:
            continue
        e.track_id = track.track_id

    # Lead cars: they drive the ego's own speed profile `lag` seconds ahead, so the gap never
    # closes below `gap` and every stop or hard brake of the ego has a cause in front of it.
    busy = [(e.start - 12.0, e.end + 6.0) for e in plan.events if e.kind != "hard_brake"]
    edges = [0.0] + [x for b in busy for x in b] + [t[-1]]
    for a, b in zip(edges[0::2], edges[1::2], strict=True):
        brakes = [e for e in plan.events if e.kind == "hard_brake" and a <= e.t <= b]
        if b - a < 12 or (not brakes and rng.random() < 0.35):
            continue
        lag = int(rng.integers(9, 13) if brakes else rng.integers(10, 18))  # frames
        gap = EGO_LENGTH / 2 + 2.3 + rng.uniform(2.5, 5.0)
        inside = (t >= a) & (t <= b)
        v_copy = np.interp(np.arange(n) + lag, np.arange(len(s_ext) - 1), np.diff(s_ext) / DT)
        slower = rng.uniform(2.0, 4.0) * (1 - _smoothstep((t - a + 3) / 3))
        faster = rng.uniform(2.0, 4.0) * _smoothstep((t - b) / 3)
        v_lead = np.maximum(0.0, v_copy - slower + faster)
        s_lead = np.concatenate(([0.0], np.cumsum(v_lead[:-1] * DT)))
        i_a = int(np.argmax(inside))
        s_lead += s_ext[i_a + lag] + gap - s_lead[i_a]
        s_lead[inside] = s_ext[np.nonzero(inside)[0] + lag] + gap
        alive = np.ones(n, bool)
        for lo, hi in busy:
            alive &= ~((t > lo + 6) & (t < hi - 4))
        lead = world.add(_vehicle_class(rng, plan.highway), s_lead, 0.0, alive=alive)
        lead.keep_clear = True
        for e in brakes:
            e.track_id = lead.track_id
            e.start = e.t - lag * DT  # the lead brakes first

    # Same-direction lanes: one speed profile per lane (so cars never overlap), the ego's
    # smoothed speed times a factor: those lanes drift past the ego slowly.
    kernel = np.ones(41) / 41
    v_smooth = np.convolve(np.pad(v, 20, mode="edge"), kernel, mode="valid")
    for lane in lanes_same:
        factor = rng.uniform(0.85, 1.2)
        offset = int(rng.integers(-30, 30))
        v_lane = factor * v_smooth[np.clip(np.arange(n) + offset, 0, n - 1)]
        drift = np.concatenate(([0.0], np.cumsum(v_lane[:-1] * DT))) - s
        pos = -RANGE_M - 20 - drift.max()
        while pos < RANGE_M + 20 - drift.min():
            category = _vehicle_class(rng, plan.highway)
            track = world.add(category, s[0] + pos + drift + s, lane + rng.normal(0, 0.15))
            pos += track.size[0] + rng.uniform(6, 20) + rng.exponential(30 if plan.highway else 18)

    # Opposite direction: constant speeds, plenty of cars.
    for lane in lanes_opposite:
        speed = rng.uniform(24, 31) if plan.highway else rng.uniform(8, 13)
        pos = s[0] - RANGE_M - 20
        while pos < s[-1] + RANGE_M + 20 + speed * t[-1]:
            category = _vehicle_class(rng, plan.highway)
            world.add(category, pos - speed * t, lane + rng.normal(0, 0.15), math.pi)
            pos += world.tracks[-1].size[0] + rng.uniform(8, 25) + rng.exponential(40)

    if not plan.highway:
        _populate_city(world, t, s)
    _clear_conflicts(world, s, d_ego)


def _populate_city(world: _World, t: np.ndarray, s: np.ndarray) -> None:
    """Parked cars, pedestrians on both sidewalks and cyclists near the right road edge."""
    rng = world.rng
    lo, hi = s[0] - RANGE_M - 20, s[-1] + RANGE_M + 20
    pos = lo
    while pos < hi:  # parked cars in clusters along the right curb
        for _ in range(int(rng.integers(1, 7))):
            category = "car" if rng.random() < 0.92 else "truck"
            track = world.add(category, pos, -4.6 + rng.normal(0, 0.12), rng.normal(0, 0.03))
            if track.size[0] > 7:  # delivery vans, not semi-trailers, park in town
                track.size = (rng.uniform(5.5, 7.0), 2.2, rng.uniform(2.4, 2.9))
            pos += track.size[0] + rng.uniform(0.8, 2.5)
        pos += rng.uniform(10, 70)
    for side, (d_lo, d_hi) in ((-1, (-8.5, -6.3)), (1, (9.2, 10.8))):
        pos = lo - 40
        while pos < hi + 40:  # pedestrians walking along the sidewalks, some standing
            pace = 0.0 if rng.random() < 0.15 else rng.choice((-1, 1)) * rng.uniform(0.9, 1.6)
            d = rng.uniform(d_lo, d_hi) + 0.15 * np.sin(t * rng.uniform(0.2, 0.6))
            world.add("pedestrian", pos + pace * t, d, 0.0 if pace >= 0 else math.pi)
            pos += rng.exponential(22.0 if side < 0 else 30.0) + 1.0
    for _ in range(int(rng.integers(1, 5))):  # cyclists, slower than the traffic
        speed = rng.uniform(3.5, 6.5)
        start = rng.uniform(s[0] - 40, max(s[0], s[-1] - speed * t[-1]) + 40)
        world.add("cyclist", start + speed * t, -2.5 + rng.normal(0, 0.1))


def _clear_conflicts(world: _World, s_ego: np.ndarray, d_ego: np.ndarray) -> None:
    """Drop background objects that would overlap the ego or a planted/lead object."""
    ego = _Track("ego", "car", (EGO_LENGTH, 1.9, 1.5), s_ego, d_ego, 0.0)
    guards = [ego, *(tr for tr in world.tracks if tr.keep_clear)]
    kept = []
    for track in world.tracks:
        ok = True
        if not track.keep_clear:
            for g in guards:
                near_s = np.abs(track.s - g.s) < (track.size[0] + g.size[0]) / 2 + 1.5
                near_d = np.abs(track.d - g.d) < (track.size[1] + g.size[1]) / 2 + 0.4
                both = near_s & near_d
                if g.alive is not None:
                    both &= g.alive
                if both.any():
                    ok = False
                    break
        if ok:
            kept.append(track)
    world.tracks = kept


# --- perception -----------------------------------------------------------------------------------
@dataclass
class _Detections:
    frame: np.ndarray
    track: np.ndarray  # index into the track list (or -1: a false positive)
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    yaw: np.ndarray
    size: np.ndarray  # (k, 3)
    score: np.ndarray
    ids: list[str]
    classes: list[str]


def _perceive(rng, world: _World, road: _Road, ego_x, ego_y, ego_yaw) -> _Detections:
    """Every track in range, in the ego frame (x forward, y left), with noise and misses."""
    n = world.n
    parts: list[tuple] = []
    cos_e, sin_e = np.cos(ego_yaw), np.sin(ego_yaw)
    for k, tr in enumerate(world.tracks):
        X, Y, H = road.at(tr.s, tr.d)
        dx, dy = X - ego_x, Y - ego_y
        x = cos_e * dx + sin_e * dy
        y = -sin_e * dx + cos_e * dy
        dist = np.hypot(x, y)
        seen = dist < RANGE_M
        if tr.alive is not None:
            seen &= tr.alive
        if not seen.any():
            continue
        # Misses: rarer up close, and a small object far away is often lost.
        p_miss = 0.015 + 0.07 * (dist / RANGE_M) ** 2 * (2.0 if tr.size[0] < 1.0 else 1.0)
        seen &= rng.random(n) >= p_miss
        idx = np.nonzero(seen)[0]
        if not len(idx):
            continue
        sd = 0.05 + 0.004 * dist[idx]
        yaw = (np.broadcast_to(tr.yaw, (n,)) + H - ego_yaw)[idx] + rng.normal(0, 0.03, len(idx))
        size = np.asarray(tr.size) * (1 + rng.normal(0, 0.03, (len(idx), 3)))
        base = 0.96 if tr.category not in ("animal", "unknown") else 0.75
        score = base - 0.25 * dist[idx] / RANGE_M + rng.normal(0, 0.03, len(idx))
        parts.append(
            (
                idx,
                np.full(len(idx), k),
                x[idx] + rng.normal(0, 1, len(idx)) * sd,
                y[idx] + rng.normal(0, 1, len(idx)) * sd,
                size[:, 2] / 2 + rng.normal(0, 0.03, len(idx)),
                yaw,
                size,
                np.clip(score, 0.3, 0.99),
            )
        )
    # Rare low-score false positives: one frame each, with a fresh id.
    fp = np.nonzero(rng.random(n) < 0.01)[0]
    fp_classes = [str(c) for c in rng.choice(("car", "pedestrian", "unknown"), len(fp))]
    fp_size = np.array([_SIZES[c][0] for c in fp_classes]).reshape(-1, 3)
    parts.append(
        (
            fp,
            np.full(len(fp), -1),
            rng.uniform(5, 60, len(fp)),
            rng.uniform(-12, 12, len(fp)),
            fp_size[:, 2] / 2,
            rng.uniform(-math.pi, math.pi, len(fp)),
            fp_size,
            rng.uniform(0.3, 0.45, len(fp)),
        )
    )
    cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
    order = np.lexsort((cols[1], cols[0]))
    frame, track, x, y, z, yaw, size, score = (c[order] for c in cols)
    ids, classes = [], []
    fp_order = {int(i): j for j, i in enumerate(np.nonzero(cols[1] == -1)[0])}
    for pos, k in zip(order, track, strict=True):
        if k >= 0:
            ids.append(world.tracks[k].track_id)
            classes.append(world.tracks[k].category)
        else:
            ids.append(world.new_id())
            classes.append(fp_classes[fp_order[int(pos)]])
    return _Detections(frame, track, x, y, z, yaw, size, score, ids, classes)


# --- ground truth -------------------------------------------------------------------------------
# What each kind's window is: the span in which its defining condition holds in the simulated
# world (noise-free), so a trigger over the lake's signals can find it to within a few samples.
WINDOWS = {
    "hard_brake": f"the ego decelerates harder than {-HARD_BRAKE_ACCEL:g} m/s²",
    "pedestrian_crossing": "the crossing pedestrian is in the ego's path",
    "animal": "the crossing animal is in the ego's path",
    "unknown_object": "the unknown object is in the ego's path (in perception range)",
    "cut_in": f"the ego brakes harder than {-CUT_IN_BRAKE:g} m/s² with the car in its path",
}
# A trigger that finds each kind (flywheel trigger add NAME --when ... --for ... --gap ...).
TRIGGERS = {
    "hard_brake": {"when": f"accel < {HARD_BRAKE_ACCEL:g}", "for_s": 0.3, "gap_s": 0.2},
    "pedestrian_crossing": {"when": "nearest_in_path_pedestrian_m < 25", "for_s": 0.3,
                            "gap_s": 0.5},
    "animal": {"when": "nearest_in_path_animal_m < 80", "for_s": 0.3, "gap_s": 0.5},
    "unknown_object": {"when": "nearest_in_path_other_m < 80", "for_s": 0.4, "gap_s": 1.0},
    # moderate braking for a vehicle that just entered the path close ahead, not while
    # steering round an obstacle (whose swerve brings the next lane's cars into the path)
    "cut_in": {"when": f"accel < {CUT_IN_BRAKE:g} AND accel >= {HARD_BRAKE_ACCEL:g} "
               "AND nearest_in_path_vehicle_m < 25 AND in_path_age_s < 4 "
               "AND coalesce(nearest_other_m, 1e9) > 25", "for_s": 0.4, "gap_s": 0.5},
}  # fmt: skip


def _observed_window(e: _Event, t, accel, world: _World, road: _Road, ego_x, ego_y, ego_yaw):
    """(start, end) in seconds of the event's observable window (see WINDOWS): the run of its
    condition that overlaps its scenario window most (that window when none does)."""
    if e.kind == "hard_brake":
        holds = accel < HARD_BRAKE_ACCEL
    else:
        track = next(tr for tr in world.tracks if tr.track_id == e.track_id)
        X, Y, _ = road.at(track.s, track.d)
        cos_e, sin_e = np.cos(ego_yaw), np.sin(ego_yaw)
        x = cos_e * (X - ego_x) + sin_e * (Y - ego_y)
        y = -sin_e * (X - ego_x) + cos_e * (Y - ego_y)
        holds = (x > 0) & (np.abs(y) <= PATH_HALF_WIDTH_M) & (np.hypot(x, y) < RANGE_M)
        if track.alive is not None:
            holds &= track.alive
        if e.kind == "cut_in":
            holds &= accel < CUT_IN_BRAKE
    edges = np.flatnonzero(np.diff(np.r_[0, holds.astype(np.int8), 0]))
    runs = list(zip(edges[0::2], edges[1::2] - 1, strict=True))
    overlap = [min(t[b], e.end) - max(t[a], e.start) for a, b in runs]
    if not runs or max(overlap) < 0:
        return e.start, e.end
    a, b = runs[int(np.argmax(overlap))]
    return float(t[a]), float(t[b])


# --- camera ---------------------------------------------------------------------------------------
_COLOURS = {
    "car": (60, 110, 230),
    "truck": (40, 70, 180),
    "bus": (30, 140, 200),
    "motorcycle": (120, 90, 230),
    "pedestrian": (235, 60, 50),
    "cyclist": (240, 200, 40),
    "animal": (160, 100, 40),
    "unknown": (230, 60, 230),
}


def _png(rgb: np.ndarray) -> bytes:
    """A PNG file of an (h, w, 3) uint8 image, written by hand (zlib + struct)."""
    h, w, _ = rgb.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1)

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def local_hour(t_ns: int, lon: float) -> float:
    """Local solar hour at longitude `lon` (what the scenes' `start_hour_local` uses)."""
    return ((t_ns / 1e9) % 86_400 / 3600 + lon / 15.0) % 24


def _render(det: _Detections, lo: int, hi: int, night: bool) -> bytes:
    """A 160x90 bird's-eye view: ego at the bottom centre, 0.5 m a pixel, forward up."""
    h, w, scale = 90, 160, 0.5
    img = np.full((h, w, 3), (18, 22, 30) if night else (70, 110, 60), np.uint8)
    img[:, w // 2 - 12 : w // 2 + 6] = (40, 40, 45) if night else (95, 95, 100)  # the road
    for k in range(lo, hi):
        col = int(w / 2 - det.y[k] / scale)
        row = int(h - 6 - det.x[k] / scale)
        half_l = max(1, int(det.size[k, 0] / scale / 2))
        half_w = max(1, int(det.size[k, 1] / scale / 2))
        r0, r1 = max(0, row - half_l), min(h, row + half_l + 1)
        c0, c1 = max(0, col - half_w), min(w, col + half_w + 1)
        if r0 < r1 and c0 < c1:
            img[r0:r1, c0:c1] = _COLOURS.get(det.classes[k], (200, 200, 200))
    img[h - 10 : h - 1, w // 2 - 2 : w // 2 + 2] = (250, 250, 250)  # the ego
    return _png(img)


# --- writing --------------------------------------------------------------------------------------
def _stamp(ns: int) -> dict:
    return {"sec": ns // 1_000_000_000, "nanosec": ns % 1_000_000_000}


def _quat(yaw: float) -> dict:
    return {"x": 0.0, "y": 0.0, "z": math.sin(yaw / 2), "w": math.cos(yaw / 2)}


def _diag(values: tuple[float, ...]) -> list[float]:
    m = len(values)
    return [values[r] if r == c else 0.0 for r in range(m) for c in range(m)]


_ODOM_POSE_COV = _diag((0.02, 0.02, 0.05, 0.001, 0.001, 0.004))
_ODOM_TWIST_COV = _diag((0.01, 0.01, 0.02, 0.001, 0.001, 0.002))
_DET_COV = [_diag((v, v, 0.05, 0.0, 0.0, 0.02)) for v in (0.01, 0.04, 0.1, 0.25, 0.5)]


def _write_log(
    path: Path, plan: _LogPlan, seconds: float, camera: bool, compression, seed: int
) -> dict:
    # Each log has its own random stream, derived from the seed and its index.
    rng = np.random.Generator(np.random.PCG64([seed, plan.index, 7919]))
    n = max(1, round(seconds * HZ))
    pad = 40  # lead cars drive the ego's profile up to 1.8 s ahead
    v_ext, s_ext = _simulate_ego(rng, plan, n + pad)
    v, s = v_ext[:n], s_ext[:n]
    t = np.arange(n) * DT
    road = _make_road(rng, -RANGE_M - 300, s_ext[-1] + RANGE_M + 300, plan.highway)

    # Lateral: the ego keeps its lane, except when it swerves round an unknown object.
    d_ego = np.zeros(n)
    for e in plan.events:
        if e.kind == "unknown_object" and e.info:
            x = (t - e.info["t_pass"]) / 2.5
            d_ego += np.where(np.abs(x) < 1, e.info["swerve"] * 0.5 * (1 + np.cos(np.pi * x)), 0)
    world = _World(rng, plan, n)
    _populate(world, t, v, s_ext, d_ego)
    ego_x, ego_y, road_h = road.at(s, d_ego)
    d_rate = np.gradient(d_ego, DT)
    along = v * (1 - road.curvature(s) * d_ego)
    yaw = road_h + np.arctan2(d_rate, np.maximum(along, 0.5))
    speed = np.hypot(along, d_rate)
    yaw_rate = np.gradient(np.unwrap(yaw), DT)
    det = _perceive(rng, world, road, ego_x, ego_y, yaw)
    for e in plan.events:  # after perception: the scenario windows above placed the traffic
        e.scenario = (e.start, e.end)
        e.start, e.end = _observed_window(e, t, np.gradient(v, DT), world, road, ego_x, ego_y, yaw)

    lat0, lon0, alt0 = plan.city
    bias = np.cumsum(rng.normal(0, 0.05, (n, 2)), axis=0)  # slowly wandering GNSS error
    jitter = rng.integers(0, 1_000_000, (n, 4))
    base = plan.start_ns + np.arange(n, dtype=np.int64) * FRAME_NS
    bounds = np.searchsorted(det.frame, np.arange(n + 1))
    night = not 6 <= local_hour(plan.start_ns, plan.city[1]) < 20
    counts = dict.fromkeys(TOPICS, 0)
    if not camera:
        del counts["/camera/front/compressed"]
    with open(path, "wb") as handle:
        writer = Writer(handle, compression=compression)
        schemas = {
            topic: writer.register_msgdef(msgtype, schema_text(msgtype))
            for topic, msgtype in TOPICS.items()
            if topic in counts
        }
        end_ns = plan.start_ns
        for i in range(n):
            ns = int(base[i] + jitter[i, 0])
            q = _quat(float(yaw[i]))
            odom = {
                "header": {"stamp": _stamp(ns), "frame_id": "odom"},
                "child_frame_id": "base_link",
                "pose": {
                    "pose": {
                        "position": {"x": float(ego_x[i]), "y": float(ego_y[i]), "z": 0.0},
                        "orientation": q,
                    },
                    "covariance": _ODOM_POSE_COV,
                },
                "twist": {
                    "twist": {
                        "linear": {"x": float(speed[i]), "y": 0.0, "z": 0.0},
                        "angular": {"x": 0.0, "y": 0.0, "z": float(yaw_rate[i])},
                    },
                    "covariance": _ODOM_TWIST_COV,
                },
            }
            writer.write_message("/odom", schemas["/odom"], odom, ns, ns, i)
            counts["/odom"] += 1
            if i % HZ == 0:
                ns = int(base[i] + 1_000_000 + jitter[i, 1])
                east = ego_x[i] + bias[i, 0] + rng.normal(0, 0.4)
                north = ego_y[i] + bias[i, 1] + rng.normal(0, 0.4)
                fix = {
                    "header": {"stamp": _stamp(ns), "frame_id": "gnss_link"},
                    "status": {"status": 0, "service": 1},
                    "latitude": lat0 + math.degrees(north / 6_378_137.0),
                    "longitude": lon0
                    + math.degrees(east / (6_378_137.0 * math.cos(math.radians(lat0)))),
                    "altitude": alt0 + 6 * math.sin(s[i] / 800) + rng.normal(0, 0.8),
                    "position_covariance": _diag((0.5, 0.5, 1.5)),
                    "position_covariance_type": 2,
                }
                writer.write_message("/gnss/fix", schemas["/gnss/fix"], fix, ns, ns, i // HZ)
                counts["/gnss/fix"] += 1
            ns = int(base[i] + 2_000_000 + jitter[i, 2])
            header = {"stamp": _stamp(ns), "frame_id": "base_link"}
            detections = []
            for k in range(bounds[i], bounds[i + 1]):
                dist = math.hypot(det.x[k], det.y[k])
                pose = {
                    "position": {"x": float(det.x[k]), "y": float(det.y[k]), "z": float(det.z[k])},
                    "orientation": _quat(float(det.yaw[k])),
                }
                detections.append(
                    {
                        "header": header,
                        "results": [
                            {
                                "hypothesis": {
                                    "class_id": det.classes[k],
                                    "score": float(det.score[k]),
                                },
                                "pose": {
                                    "pose": pose,
                                    "covariance": _DET_COV[min(4, int(dist / 20))],
                                },
                            }
                        ],
                        "bbox": {
                            "center": pose,
                            "size": {
                                "x": float(det.size[k, 0]),
                                "y": float(det.size[k, 1]),
                                "z": float(det.size[k, 2]),
                            },
                        },
                        "id": det.ids[k],
                    }
                )
            message = {"header": header, "detections": detections}
            writer.write_message(
                "/perception/objects", schemas["/perception/objects"], message, ns, ns, i
            )
            counts["/perception/objects"] += 1
            end_ns = ns
            if camera and i % HZ == 0:
                ns = int(base[i] + 4_000_000 + jitter[i, 3])
                image = {
                    "header": {"stamp": _stamp(ns), "frame_id": "camera_front_optical"},
                    "format": "png",
                    "data": _render(det, bounds[i], bounds[i + 1], night),
                }
                topic = "/camera/front/compressed"
                writer.write_message(topic, schemas[topic], image, ns, ns, i // HZ)
                counts[topic] += 1
                end_ns = ns
        writer.finish()
    return {
        "file": path.name,
        "start_ns": int(base[0] + jitter[0, 0]),
        "end_ns": end_ns,
        "messages": counts,
        "regime": "highway" if plan.highway else "urban",
        "origin": {"lat": round(plan.city[0], 6), "lon": round(plan.city[1], 6)},
    }


def generate(
    out_dir: str | Path,
    logs: int = 4,
    seconds: float = 120.0,
    seed: int = 0,
    camera: bool = False,
    *,
    compression: str = "zstd",
    day: dt.date | None = None,
) -> list[Path]:
    """Write `logs` synthetic drive logs of `seconds` each, and `out_dir/truth.json`.

    Files are `drive_0000.mcap`, ... (ROS 2 profile, CDR). The same arguments give
    byte-identical files. `compression` is the MCAP chunk compression: "zstd" (what rosbag2
    and the mcap writers default to), "lz4" or "none". `day` puts every log on that UTC day
    (default: a day of 2026 drawn per log); only the timestamps change.

    >>> generate("drives", logs=2, seconds=10, seed=1)
    [PosixPath('drives/drive_0000.mcap'), PosixPath('drives/drive_0001.mcap')]
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kinds = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
    if compression not in kinds:
        raise ValueError(f"compression must be one of {', '.join(kinds)}, not {compression!r}")
    paths, logs_truth, events = [], [], []
    for p in _plan(logs, seconds, seed, day):
        path = out / f"drive_{p.index:04d}.mcap"
        info = _write_log(path, p, seconds, camera, kinds[compression], seed)
        logs_truth.append(info)
        paths.append(path)
        for e in p.events:
            events.append(
                {
                    "log": path.name,
                    "kind": e.kind,
                    "start_ns": p.start_ns + round(e.start * 1e9),
                    "end_ns": p.start_ns + round(e.end * 1e9),
                    "scenario_start_ns": p.start_ns + round(e.scenario[0] * 1e9),
                    "scenario_end_ns": p.start_ns + round(e.scenario[1] * 1e9),
                    "track_id": e.track_id,
                }
            )
    truth = {
        "seed": seed,
        "generator_version": GENERATOR_VERSION,
        "windows": WINDOWS,
        "triggers": TRIGGERS,
        "logs": logs_truth,
        "events": events,
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return paths
