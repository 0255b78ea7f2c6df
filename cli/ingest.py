"""Commands of the data coming in: generate, ingest, status, config."""

from __future__ import annotations

import sys

import click

from cli._common import (
    expected_errors,
    format_option,
    lake_option,
    print_ingest_summary,
    short_names,
)
from flywheel import console
from flywheel.config import SECTIONS, load_config
from flywheel.errors import FlywheelError, UsageError


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--logs", default=4, show_default=True, type=click.IntRange(1), help="Logs to write.")
@click.option(
    "--seconds",
    default=120.0,
    show_default=True,
    type=click.FloatRange(1),
    help="Length of each log.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same bytes.")
@click.option("--camera/--no-camera", default=False, help="Add a 1 Hz camera keyframe topic.")
@expected_errors
def generate(out_dir: str, logs: int, seconds: float, seed: int, camera: bool) -> None:
    """Write synthetic ROS 2 MCAP drive logs with planted events, and OUT_DIR/truth.json.

    Example: flywheel generate drives --logs 4 --seconds 120 --seed 7
    """
    from sim.generate import generate as run

    paths = run(out_dir, logs=logs, seconds=seconds, seed=seed, camera=camera)
    total = sum(p.stat().st_size for p in paths)
    console.line(f"wrote {len(paths)} logs ({total / 1e6:.1f} MB) and truth.json to {out_dir}")


def _parse_topic_map(pairs: tuple[str, ...]) -> dict[str, str] | None:
    from ingest.readers import KINDS

    mapping = {}
    for pair in pairs:
        topic, sep, kind = pair.rpartition("=")
        if not sep or not topic or kind not in KINDS:
            raise click.BadParameter(
                f"{pair!r}: expected TOPIC=KIND with KIND one of {', '.join(KINDS)}",
                param_hint="--topic-map",
            )
        mapping[topic] = kind
    return mapping or None


@click.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@lake_option
@click.option(
    "--scene-seconds",
    type=float,  # the range is the setting's (flywheel.config), checked by load_config
    default=None,
    help="Scene length in seconds, 1 to 3600 [default: 10].",
)
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Local Dask worker processes [default: 1, no cluster].",
)
@click.option("--scheduler", default=None, help="Address of an existing Dask scheduler.")
@click.option("--force", is_flag=True, help="Replace logs that were already ingested.")
@click.option(
    "--topic-map",
    "topic_map",
    multiple=True,
    metavar="TOPIC=KIND",
    help="Override recognition by type: KIND is ego, gnss, imu, objects, camera "
    "or ignore. Repeatable.",
)
@click.option(
    "--embedder", default=None, metavar="MODULE:ATTR", help="Your own scene embedder (see README)."
)
@click.option(
    "--source",
    default=None,
    metavar="NAME",
    help="The source (flywheel source add) recorded on every log [default: [ingest] source "
    "in flywheel.toml, else unassigned].",
)
@format_option
@expected_errors
def ingest_command(
    paths, lake, scene_seconds, workers, scheduler, force, topic_map, embedder, source, fmt
) -> None:
    """Ingest logs (files or folders, recursively) into the lake.

    Example: flywheel ingest drives/ --lake lake --workers 2
    """
    from ingest import discover, ingest

    if workers and scheduler:
        raise click.UsageError("give --workers or --scheduler, not both")
    config = load_config(
        {
            "lake": lake,
            "ingest.scene_seconds": scene_seconds,
            "ingest.workers": workers,
            "ingest.embedder": embedder,
            "ingest.source": source,
        }
    )
    mapping = _parse_topic_map(topic_map)
    try:
        total = len(discover(paths))
    except FlywheelError as exc:
        raise UsageError(str(exc)) from exc
    with console.progress(total, "ingest") as advance:
        summary = ingest(
            paths,
            config.lake,
            scene_seconds=config.ingest.scene_seconds,
            workers=config.ingest.workers,
            scheduler=scheduler,
            force=force,
            topic_map=mapping,
            embedder=config.ingest.embedder,
            source=config.ingest.source,
            on_result=lambda r: advance(
                1, f"{r.status} {short_names([r.source_uri])[r.source_uri]}"
            ),
        )
    if fmt == "json":
        console.print_json(summary.as_dict())
    else:
        print_ingest_summary(summary)
    sys.exit(summary.exit_code)


@click.command()
@lake_option
@format_option
@expected_errors
def status(lake, fmt) -> None:
    """Summarise the lake: tables and their rows, logs, scenes by tag, quarantine.

    Example: flywheel status --lake lake
    """
    from flywheel.summary import lake_summary, print_lake_summary

    summary = lake_summary(load_config({"lake": lake}).lake)
    if fmt == "json":
        console.print_json(summary)
    else:
        print_lake_summary(summary)


@click.command("config")
@format_option
@expected_errors
def show_config(fmt) -> None:
    """Print the resolved configuration and where each setting came from.

    Example: flywheel config --format json
    """
    config = load_config()
    data = config.as_dict()
    if fmt == "json":
        console.print_json(data)
        return
    sources = data.pop("sources")
    rows = [("lake", data["lake"], sources.get("lake", "default"))]
    for section in SECTIONS:
        for key, value in data[section].items():
            name = f"{section}.{key}"
            rows.append((name, value, sources.get(name, "default")))
    console.table(rows, ["setting", "value", "from"])
