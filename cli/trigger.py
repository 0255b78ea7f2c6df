"""The `flywheel trigger` group: events over every sample of every log."""

from __future__ import annotations

import click

from cli._common import expected_errors, format_option, lake_option
from flywheel import console
from flywheel.config import load_config
from flywheel.errors import FlywheelError, UsageError

HIT_COLUMNS = ("trigger", "log_id", "start_ns", "end_ns", "scene_ids")
HIT_VIEW = ("log_id", "start", "seconds", "min_accel", "min_nearest_in_path_m", "scenes")


@click.group()
def trigger() -> None:
    """Events over every sample of every log: add, run, list hits, see the signal columns."""


@trigger.command("add")
@click.argument("name")
@click.option(
    "--when", required=True, metavar="EXPR", help="A DuckDB boolean expression over the frame."
)
@click.option(
    "--for",
    "for_s",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Keep only hits that hold this long.",
)
@click.option(
    "--gap",
    "gap_s",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Bridge false runs this short inside a hit.",
)
@click.option("--then", default=None, metavar="EXPR", help="A second condition that must follow.")
@click.option(
    "--within",
    "within_s",
    type=click.FloatRange(0),
    default=None,
    metavar="SECONDS",
    help="With --then: how soon after the first it must hold.",
)
@lake_option
@format_option
@expected_errors
def trigger_add(name, when, for_s, gap_s, then, within_s, lake, fmt) -> None:
    """Define trigger NAME (a new version when its definition changed), then run it.

    Example: flywheel trigger add brake_ped --when "accel < -4 AND nearest_in_path_pedestrian_m < 15" --for 0.5
    """  # noqa: E501
    from ingest import triggers

    lake = load_config({"lake": lake}).lake
    try:
        made = triggers.define(lake, name, when, for_s, gap_s, then, within_s)
    except FlywheelError as exc:  # a refused definition is a usage error: exit 2, stored nothing
        raise UsageError(str(exc)) from None
    found = triggers.run(lake, [made.name])[made.name]
    if fmt == "json":
        console.print_json({"name": made.name, "version": made.version, "hits": found})
        return
    console.line(f"trigger {made.name!r} version {made.version}: {found:,} new hits")


@trigger.command("list")
@lake_option
@format_option
@expected_errors
def trigger_list(lake, fmt) -> None:
    """Every trigger's current definition.

    Example: flywheel trigger list --format json
    """
    from ingest import triggers

    lake = load_config({"lake": lake}).lake
    rows = [
        {"name": t.name, "when": t.when, "for_s": t.for_s, "version": t.version,
         "gap_s": t.gap_s, "then": t.then, "within_s": t.within_s}
        for t in triggers.definitions(lake).values()
    ]  # fmt: skip
    if fmt == "json":
        console.print_json(rows)
        return
    console.table(
        [(r["name"], r["version"], r["when"], f"{r['for_s']:g}") for r in rows],
        ("name", "version", "when", "for_s"),
        title="triggers",
    )


@trigger.command("run")
@click.argument("names", nargs=-1)
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=None,
    help="Local worker processes (Dask).  [default: [ingest] workers]",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Run on this Dask cluster's workers (they must see the lake).",
)
@lake_option
@format_option
@expected_errors
def trigger_run(names, workers, scheduler, lake, fmt) -> None:
    """Evaluate triggers (all, or NAMES) on every log not yet evaluated for their version.

    Example: flywheel trigger run brake_ped --workers 2
    """
    from ingest import triggers

    config = load_config({"lake": lake, "ingest.workers": workers})
    lake = config.lake
    found = triggers.run(
        lake, list(names) or None, workers=config.ingest.workers, scheduler=scheduler
    )
    if fmt == "json":
        console.print_json(found)
        return
    console.table([(n, f"{h:,}") for n, h in found.items()], ("trigger", "new hits"))


@trigger.command("hits")
@click.argument("name")
@click.option("--version", type=click.IntRange(1), default=None, help="Default: the current one.")
@lake_option
@format_option
@expected_errors
def trigger_hits(name, version, lake, fmt) -> None:
    """The hits of trigger NAME: time ranges, with the scenes that overlap them.

    Example: flywheel trigger hits brake_ped --format json
    """
    import pandas as pd

    from ingest import triggers

    lake = load_config({"lake": lake}).lake
    found = triggers.hits(lake, name, version)
    if fmt == "json":
        records = [
            {**{c: row[c] for c in HIT_COLUMNS}, "version": row["version"],
             "scene_ids": list(row["scene_ids"])}
            for row in found.to_dict("records")
        ]  # fmt: skip
        console.print_json(records)
        return
    view = found.assign(
        start=lambda d: pd.to_datetime(d["start_ns"], unit="ns", utc=True),
        seconds=lambda d: (d["end_ns"] - d["start_ns"]) / 1e9,
        scenes=lambda d: d["scene_ids"].map(len),
    )
    console.frame(view, "table", HIT_VIEW, title=f"hits of {name}")


@trigger.command("columns")
@format_option
@expected_errors
def trigger_columns(fmt) -> None:
    """The signal frame's columns (one row per ego sample) that --when can use, with units.

    Example: flywheel trigger columns
    """
    from ingest import triggers

    rows = triggers.columns()
    if fmt == "json":
        console.print_json(rows)
        return
    console.table([(r["name"], r["unit"], r["description"]) for r in rows],
                  ("name", "unit", "description"), title="signal frame")  # fmt: skip
