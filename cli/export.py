"""The `flywheel export` group: files for other tools, made from what the lake points at."""

from __future__ import annotations

import click

from cli._common import expected_errors, format_option, lake_option
from flywheel import console
from flywheel.config import load_config


@click.group()
def export() -> None:
    """Write files other tools open: the original messages of a scene as an MCAP clip."""


@export.command("clip")
@click.argument("scene_id")
@click.option(
    "--out",
    required=True,
    metavar="FILE.mcap",
    help="The MCAP file to write (replaced whole if it exists; its folder must exist).",
)
@click.option(
    "--topics",
    multiple=True,
    metavar="T",
    help="Only these topics: repeat the option or give a comma-separated list. Default: all.",
)
@click.option(
    "--pad",
    "pad_s",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Widen the scene's window by this much on each side.",
)
@lake_option
@format_option
@expected_errors
def export_clip_command(scene_id, out, topics, pad_s, lake, fmt) -> None:
    """Write the messages of scene SCENE_ID's time window, from its source log, to an MCAP file.

    Each message keeps its log time, publish time and payload bytes, on a channel with the
    source's topic, encoding and schema; Foxglove and the mcap tools open the file. A ROS 1
    bag gives profile ros1 (ros1msg schemas, the bag's own definitions), a ROS 2 bag profile
    ros2, an MCAP file its own profile.

    Example: flywheel export clip LOG-00003 --out clip.mcap --topics /odom,/perception/objects
    """
    import ingest

    where = load_config({"lake": lake}).lake
    summary = ingest.export_clip(where, scene_id, out, topics=topics or None, pad_s=pad_s)
    if fmt == "json":
        console.print_json(summary.as_dict())
        return
    console.table(list(summary.topics.items()), ["topic", "messages"])
    seconds = (summary.end_ns - summary.start_ns) / 1e9
    console.line(
        f"scene {summary.scene_id}: {summary.messages:,} messages, {summary.bytes:,} bytes, "
        f"window [{summary.start_ns}, {summary.end_ns}) ns ({seconds:.3f} s"
        + (f", padded {summary.pad_s:g} s each side" if summary.pad_s else "")
        + f"), profile {summary.profile or '(none)'}"
    )
    console.line(f"from {summary.source_uri}")
    console.line(f"wrote {summary.out}")
    for note in summary.notes:
        console.warn(("note:", "yellow"), f" {note}")
