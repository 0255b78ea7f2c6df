"""Bulk numpy decoding (ingest.decode) against mcap-ros2-support's per-message decoder, per type.

    .venv/bin/python bench/decode.py [--messages 20000] [--detections 15] [--naive-limit 5000]

Messages are serialized once with mcap_ros2's Writer (a pool of distinct messages, repeated to
--messages); the bulk decoder decodes the whole batch in one call (best of 3), the naive
decoder one message at a time (on the first --naive-limit messages: it is the slow side).
Prints messages/s of each and the ratio.
"""

from __future__ import annotations

import argparse
import time
from io import BytesIO

import numpy as np
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from mcap_ros2.writer import Writer
from rich.console import Console
from rich.table import Table

from ingest.decode import bulk_decoder, schema_text

FRAMES = ["odom", "map", "base_link", "imu_link", "/gps"]
CLASSES = ["car", "truck", "bus", "pedestrian", "cyclist", "animal", "unknown"]


def _header(rng, i: int) -> dict:
    return {"stamp": {"sec": 1_700_000_000 + i // 10, "nanosec": i % 10 * 10**8},
            "frame_id": FRAMES[i % len(FRAMES)]}  # fmt: skip


def _xyz(rng) -> dict:
    return dict(zip("xyz", rng.normal(size=3).tolist(), strict=True))


def _pose(rng) -> dict:
    q = dict(zip("xyzw", rng.normal(size=4).tolist(), strict=True))
    return {"position": _xyz(rng), "orientation": q}


def _covariance(rng, n: int) -> list[float]:
    return rng.normal(size=n).tolist()


def make_message(msgtype: str, rng, i: int, detections: int) -> dict:
    header = _header(rng, i)
    if msgtype == "nav_msgs/msg/Odometry":
        return {
            "header": header,
            "child_frame_id": "base_link",
            "pose": {"pose": _pose(rng), "covariance": _covariance(rng, 36)},
            "twist": {
                "twist": {"linear": _xyz(rng), "angular": _xyz(rng)},
                "covariance": _covariance(rng, 36),
            },
        }
    if msgtype == "geometry_msgs/msg/PoseStamped":
        return {"header": header, "pose": _pose(rng)}
    if msgtype == "sensor_msgs/msg/NavSatFix":
        return {
            "header": header,
            "status": {"status": 0, "service": 1},
            "latitude": 42.0 + rng.random(),
            "longitude": -71.0 + rng.random(),
            "altitude": 10.0,
            "position_covariance": _covariance(rng, 9),
            "position_covariance_type": 2,
        }
    if msgtype == "sensor_msgs/msg/Imu":
        return {
            "header": header,
            "orientation": _pose(rng)["orientation"],
            "orientation_covariance": _covariance(rng, 9),
            "angular_velocity": _xyz(rng),
            "angular_velocity_covariance": _covariance(rng, 9),
            "linear_acceleration": _xyz(rng),
            "linear_acceleration_covariance": _covariance(rng, 9),
        }
    n = int(rng.integers(detections // 2, detections * 3 // 2 + 1))
    return {
        "header": header,
        "detections": [
            {
                "header": header,
                "results": [
                    {
                        "hypothesis": {"class_id": str(rng.choice(CLASSES)), "score": rng.random()},
                        "pose": {"pose": _pose(rng), "covariance": _covariance(rng, 36)},
                    }
                ],
                "bbox": {"center": _pose(rng), "size": _xyz(rng)},
                "id": str(int(rng.integers(0, 500))),
            }
            for _ in range(n)
        ],
    }


def serialized(msgtype: str, count: int, detections: int, pool: int = 1000) -> list[bytes]:
    """`count` messages serialized by mcap_ros2 (a pool of distinct ones, repeated)."""
    rng = np.random.default_rng(0)
    out = BytesIO()
    writer = Writer(out)
    schema = writer.register_msgdef(msgtype, schema_text(msgtype))
    for i in range(min(pool, count)):
        message = make_message(msgtype, rng, i, detections)
        writer.write_message("/t", schema, message, log_time=i, publish_time=i)
    writer.finish()
    out.seek(0)
    raw = [record.data for _, _, record in make_reader(out).iter_messages()]
    return (raw * (count // len(raw) + 1))[:count]


def naive_rate(msgtype: str, raw: list[bytes]) -> float:
    out = BytesIO()
    writer = Writer(out)
    writer.register_msgdef(msgtype, schema_text(msgtype))
    writer.finish()
    out.seek(0)
    schema = next(iter(make_reader(out).get_summary().schemas.values()))
    decode = DecoderFactory().decoder_for("cdr", schema)
    started = time.perf_counter()
    for data in raw:
        decode(data)
    return len(raw) / (time.perf_counter() - started)


def bulk_rate(msgtype: str, raw: list[bytes]) -> tuple[float, int]:
    decode = bulk_decoder(msgtype, "cdr", schema_text(msgtype))
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        columns = decode(raw)
        best = min(best, time.perf_counter() - started)
    return len(raw) / best, len(columns["stamp_ns"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--detections", type=int, default=15, help="mean per Detection3DArray")
    parser.add_argument("--naive-limit", type=int, default=5_000)
    args = parser.parse_args()
    console = Console(stderr=True)
    table = Table(title=f"decode of {args.messages:,} messages per type (CDR little-endian)")
    for column in ("type", "bytes/msg", "rows", "bulk msg/s", "mcap_ros2 msg/s", "ratio"):
        table.add_column(column, justify="left" if column == "type" else "right")
    types = [
        "nav_msgs/msg/Odometry",
        "geometry_msgs/msg/PoseStamped",
        "sensor_msgs/msg/NavSatFix",
        "sensor_msgs/msg/Imu",
        "vision_msgs/msg/Detection3DArray",
    ]
    for msgtype in types:
        console.print(f"{msgtype}: serializing ...")
        raw = serialized(msgtype, args.messages, args.detections)
        bulk, rows = bulk_rate(msgtype, raw)
        naive = naive_rate(msgtype, raw[: args.naive_limit])
        size = sum(map(len, raw)) / len(raw)
        table.add_row(
            msgtype, f"{size:,.0f}", f"{rows:,}", f"{bulk:,.0f}", f"{naive:,.0f}",
            f"{bulk / naive:,.0f}x",
        )  # fmt: skip
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
