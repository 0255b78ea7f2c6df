"""The `flywheel` command: each subcommand is the Python API with a shell around it.

Exit codes (CONTRACT §4): 0 success, 1 some input rejected (the rest processed) or an
expected failure, 2 usage error. Stage packages are imported only when their command runs.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from flywheel import console
from flywheel.config import SECTIONS, load_config
from flywheel.errors import FlywheelError, UsageError

FORMATS = ("table", "json")


def lake_option(command: Callable) -> Callable:
    return click.option(
        "--lake",
        type=click.Path(file_okay=False),
        default=None,
        help="Lake folder. Default: $FLYWHEEL_LAKE, else `lake` in flywheel.toml, else ./lake.",
    )(command)


def format_option(command: Callable) -> Callable:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="table for people, json for programs.",
    )(command)


def expected_errors(command: Callable) -> Callable:
    """Turn expected failures into one clear line on stderr and the right exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except FlywheelError as exc:  # ConfigError and UsageError exit 2, the rest 1
            console.error(exc)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            interrupted()
        except RuntimeError as exc:  # DuckDB reports a Ctrl-C it caught mid-query this way
            if not _is_interrupt(exc):
                raise
            interrupted()

    return wrapper


INTERRUPTED = 130  # 128 + SIGINT, what shells report for a Ctrl-C


def interrupted() -> None:
    """Ctrl-C: one line on stderr, exit 130. Writes are atomic, so the lake is as it was
    before the step that was cut short."""
    console.warn("interrupted")
    sys.exit(INTERRUPTED)


def _is_interrupt(exc: BaseException) -> bool:
    from flywheel.query import is_interrupt

    return is_interrupt(exc)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flywheel-av")
def cli() -> None:
    """Flywheel: drive logs in, scenes mined, labeled, and the loop measured."""


@cli.command()
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


@cli.command("ingest")
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
@format_option
@expected_errors
def ingest_command(
    paths, lake, scene_seconds, workers, scheduler, force, topic_map, embedder, fmt
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
            on_result=lambda r: advance(
                1, f"{r.status} {_short_names([r.source_uri])[r.source_uri]}"
            ),
        )
    if fmt == "json":
        console.print_json(summary.as_dict())
    else:
        print_ingest_summary(summary)
    sys.exit(summary.exit_code)


def print_ingest_summary(summary) -> None:
    names = _short_names([r.source_uri for r in summary.results])
    rows = [
        (
            names[r.source_uri],
            r.status,
            r.log_id,
            r.message_count
            if r.complete or r.expected_messages is None
            else f"{r.message_count:,} of {r.expected_messages:,}",
            r.n_scenes,
            r.reason or "; ".join(r.notes[:1]) or "",
        )
        for r in summary.results
    ]
    console.table(rows, ["file", "status", "log_id", "messages", "scenes", "note"])
    totals = summary.as_dict()
    mb = totals["bytes"] / 1e6
    console.line(
        f"{totals['files']} files, {totals['ingested']} ingested, {totals['skipped']} already "
        f"in the lake, {totals['salvaged']} salvaged, {totals['quarantined']} quarantined; "
        f"{totals['messages']:,} messages, {totals['scenes']:,} scenes, {mb:.1f} MB "
        f"in {totals['seconds']:.1f} s"
    )
    # which topic went into which table, once per distinct mapping (a fleet shares one)
    mappings: dict[str, int] = {}
    for r in summary.results:
        if r.tables:
            pairs = sorted(r.tables.items(), key=lambda item: (item[1], item[0]))
            key = ", ".join(f"{topic} -> {table}" for topic, table in pairs)
            mappings[key] = mappings.get(key, 0) + 1
    for key, n in mappings.items():
        console.line(f"topics into tables: {key}" + (f" ({n} files)" if n > 1 else ""))
    refused: dict[str, int] = {}  # --topic-map entries refused, unmatched or unusable
    for r in summary.results:
        for note in r.notes:
            if "--topic-map" in note:
                refused[note] = refused.get(note, 0) + 1
    for note, n in refused.items():
        console.warn(("topic map:", "yellow"), f" {note}" + (f" ({n} files)" if n > 1 else ""))
    rejected = [r for r in summary.results if r.rejected]
    for r in rejected:
        console.warn((f"{r.status}:", "yellow"), f" {r.source_uri}: {r.reason}")


def _short_names(uris: list[str]) -> dict[str, str]:
    """Each source as a path relative to what all of them share (names alone can repeat)."""
    import os
    from urllib.parse import unquote, urlparse

    paths = {uri: unquote(urlparse(uri).path) for uri in uris}
    if len(paths) < 2:
        return {uri: Path(path).name for uri, path in paths.items()}
    common = os.path.commonpath([str(Path(p).parent) for p in paths.values()])
    return {uri: os.path.relpath(path, common) for uri, path in paths.items()}


@cli.command()
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


@cli.command()
@lake_option
@click.option("--logs", default=4, show_default=True, type=click.IntRange(1))
@click.option("--seconds", default=120.0, show_default=True, type=click.FloatRange(10))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1))
@expected_errors
def demo(lake, logs, seconds, seed, workers) -> None:
    """Run the loop on generated data: generate, ingest, and summarise the lake.

    Example: flywheel demo --lake demo-lake
    """
    from cli.demo import run_demo

    run_demo(
        load_config({"lake": lake}).lake, logs=logs, seconds=seconds, seed=seed, workers=workers
    )


@cli.command("config")
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


# -- mining -----------------------------------------------------------------------------------

SCENE_COLUMNS = (
    "rank", "scene_id", "score", "start", "tags", "max_speed", "min_accel",
    "min_object_distance", "n_pedestrians", "n_vehicles",
)  # fmt: skip
MINE_FORMATS = ("table", "json", "csv")


def mine_options(command: Callable) -> Callable:
    for option in reversed(
        [
            click.option(
                "--save",
                "save_as",
                metavar="NAME",
                default=None,
                help="Store the result in `selections` under NAME.",
            ),
            click.option("--replace", is_flag=True, help="With --save: overwrite NAME."),
            click.option(
                "--format",
                "fmt",
                type=click.Choice(MINE_FORMATS),
                default="table",
                show_default=True,
                help="table for people, json or csv for programs.",
            ),
        ]
    ):
        command = option(command)
    return lake_option(command)


def _show(df, fmt: str, save_as: str | None, replace: bool, lake, columns=SCENE_COLUMNS) -> None:
    import mining

    if save_as:
        miner = mining.open(lake)
        miner.save(save_as, df, replace=replace)
        console.warn(f"saved {len(df)} scenes as selection {save_as!r}")
    console.frame(df, fmt, columns, title=df.attrs.get("query"))


@cli.command("index")
@lake_option
@click.option(
    "--kind",
    type=click.Choice(("auto", "flat", "ivf", "hnsw")),
    default="auto",
    show_default=True,
    help="auto: exact while that is fast, HNSW beyond.",
)
@click.option(
    "--full",
    is_flag=True,
    help="Rebuild every shard (by default only shards of new or changed scenes are built).",
)
@click.option(
    "--shard-size",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Scenes per shard: a build holds one shard in memory  [default: 1,000,000]",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Build the shards on this Dask cluster's workers (they must see the lake).",
)
@format_option
@expected_errors
def index_command(lake, kind, full, shard_size, scheduler, fmt) -> None:
    """Build the similarity index over every scene's embedding, shard by shard.

    Only shards whose scenes are new or changed are built; the rest are kept.

    Example: flywheel index --lake lake --kind auto
    """
    from mining.index import SHARD_SIZE, publish_index

    where = load_config({"lake": lake}).lake
    manifest = publish_index(
        where, kind, full=full, shard_size=shard_size or SHARD_SIZE, scheduler=scheduler
    )
    if fmt == "json":
        console.print_json(manifest)
        return
    console.line(
        f"{manifest['kind']} index over {manifest['count']:,} scenes "
        f"({manifest.get('embedding_version')}) in {len(manifest['shards'])} shard(s): "
        f"{manifest['shards_built']} built, {manifest['shards_kept']} kept, "
        f"{manifest['build_seconds']:.2f} s"
        + (f" on the cluster at {scheduler}" if scheduler else "")
    )


@cli.group()
def mine() -> None:
    """Find scenes: SQL, similar to a scene, rare, diverse. Each can --save a selection."""


@mine.command("sql")
@click.argument("query")
@mine_options
@expected_errors
def mine_sql(query, lake, save_as, replace, fmt) -> None:
    """Run a DuckDB query; every lake table is a view of the same name.

    Example: flywheel mine sql "SELECT scene_id, min_accel FROM scenes WHERE min_accel < -4"
    """
    import mining

    lake = load_config({"lake": lake}).lake
    df = mining.open(lake).sql(query)
    df.attrs.setdefault("query", query)
    if "embedding" in df.columns:
        df = df.drop(columns=["embedding"])
    _show(df, fmt, save_as, replace, lake, columns=None)


@mine.command("similar")
@click.argument("scene_id")
@click.option("--k", default=50, show_default=True, type=click.IntRange(1))
@click.option("--where", default=None, metavar="SQL", help="Filter: a DuckDB boolean expression.")
@mine_options
@expected_errors
def mine_similar(scene_id, k, where, lake, save_as, replace, fmt) -> None:
    """Scenes most like SCENE_ID (itself excluded), best first.

    Example: flywheel mine similar LOG-00003 --k 20 --where "n_pedestrians > 0"
    """
    import mining

    lake = load_config({"lake": lake}).lake
    _show(mining.open(lake).similar(scene_id, k=k, where=where), fmt, save_as, replace, lake)


@mine.command("rare")
@click.option("--k", default=100, show_default=True, type=click.IntRange(1))
@click.option("--where", default=None, metavar="SQL", help="Filter: a DuckDB boolean expression.")
@mine_options
@expected_errors
def mine_rare(k, where, lake, save_as, replace, fmt) -> None:
    """The most unusual scenes first (far from their nearest neighbours).

    Example: flywheel mine rare --k 20 --save rare-batch
    """
    import mining

    lake = load_config({"lake": lake}).lake
    _show(mining.open(lake).rare(k=k, where=where), fmt, save_as, replace, lake)


@mine.command("diverse")
@click.option(
    "--from", "source", required=True, metavar="SELECTION", help="The saved selection to pick from."
)
@click.option("--n", default=200, show_default=True, type=click.IntRange(1))
@click.option(
    "--weight",
    default=None,
    metavar="COLUMN",
    help="Favour scenes with a higher value of this column (e.g. score).",
)
@mine_options
@expected_errors
def mine_diverse(source, n, weight, lake, save_as, replace, fmt) -> None:
    """A spread-out subset of a selection: covers the space instead of repeating one situation.

    Example: flywheel mine diverse --from rare-batch --n 10 --save labeling-batch-1
    """
    import mining

    lake = load_config({"lake": lake}).lake
    _show(mining.open(lake).diverse(source, n=n, weight=weight), fmt, save_as, replace, lake)


@mine.command("trigger")
@click.argument("name")
@mine_options
@expected_errors
def mine_trigger(name, lake, save_as, replace, fmt) -> None:
    """The scenes that overlap the hits of trigger NAME (each once, in time order).

    Example: flywheel mine trigger hard_brake_ped --save brake-ped
    """
    import mining

    lake = load_config({"lake": lake}).lake
    _show(mining.open(lake).trigger_scenes(name), fmt, save_as, replace, lake)


# -- triggers ---------------------------------------------------------------------------------

HIT_COLUMNS = ("trigger", "log_id", "start_ns", "end_ns", "scene_ids")
HIT_VIEW = ("log_id", "start", "seconds", "min_accel", "min_nearest_in_path_m", "scenes")


@cli.group()
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


# -- labeling ---------------------------------------------------------------------------------

VENDORS = ("simulated", "label-studio")
BATCH_VIEW = ("batch_id", "vendor", "state", "tasks", "labeled", "progress", "cost", "age_s",
              "past_sla", "turnaround_p50_s")  # fmt: skip


def _print_submit(summary, fmt: str) -> None:
    if fmt == "json":
        console.print_json(summary.as_dict())
        return
    rows = [(b.batch_id, b.state, b.tasks, b.cost, b.reconciled) for b in summary.batches]
    console.table(rows, ["batch", "state", "tasks", "cost USD", "reconciled"])
    console.line(
        f"{summary.scenes} scenes of {summary.selection!r} for {summary.vendor}: "
        f"{len(summary.batches)} batches, {summary.skipped} skipped (already at the vendor), "
        f"{summary.cost_submitted:.2f} USD submitted, {len(summary.pending_approval)} batches "
        "waiting for `flywheel label approve`"
    )


@cli.group()
def label() -> None:
    """Send selections to labeling vendors, sync labels back, watch turnaround."""


@label.command("submit")
@click.option("--selection", required=True, help="A saved selection (flywheel mine … --save).")
@click.option("--vendor", type=click.Choice(VENDORS), required=True)
@click.option("--batch-size", type=int, default=None, help="[default: 100]")
@click.option(
    "--priority",
    type=int,
    default=0,
    show_default=True,
    help="Higher goes first in the vendor's queue and in status.",
)
@click.option(
    "--max-cost",
    type=float,
    default=None,
    metavar="USD",
    help="Refuse (submit nothing) if the batches would cost more.",
)
@click.option(
    "--approval-threshold",
    type=float,
    default=None,
    metavar="USD",
    help="Batches costing more wait for `flywheel label approve`.",
)
@click.option("--relabel", is_flag=True, help="Send scenes the vendor already has again.")
@lake_option
@format_option
@expected_errors
def label_submit(
    selection, vendor, batch_size, priority, max_cost, approval_threshold, relabel, lake, fmt
) -> None:
    """Submit a selection to a vendor in batches, each scene at most once.

    Example: flywheel label submit --selection demo --vendor simulated --batch-size 50
    """
    import labeling
    from labeling.vendors import open_vendor

    config = load_config(
        {
            "lake": lake,
            "labeling.batch_size": batch_size,
            "labeling.max_cost": max_cost,
            "labeling.approval_threshold": approval_threshold,
        }
    )
    settings = config.labeling
    summary = labeling.submit(
        config.lake,
        selection,
        open_vendor(vendor, config.lake, settings),
        batch_size=settings.batch_size,
        priority=priority,
        max_cost=settings.max_cost,
        approval_threshold=settings.approval_threshold,
        relabel=relabel,
    )
    _print_submit(summary, fmt)


@label.command("approve")
@click.argument("batch_id")
@lake_option
@format_option
@expected_errors
def label_approve(batch_id, lake, fmt) -> None:
    """Approve a batch waiting as pending_approval, and submit it.

    Example: flywheel label approve demo-1a2b3c4d
    """
    import labeling
    from labeling.vendors import open_vendor

    config = load_config({"lake": lake})
    known = labeling.status(config.lake, batch_id)
    vendor = known["vendor"].iloc[0] if len(known) else "simulated"
    summary = labeling.approve(
        config.lake, batch_id, open_vendor(vendor, config.lake, config.labeling)
    )
    _print_submit(summary, fmt)


@label.command("sync")
@click.option(
    "--vendor",
    type=click.Choice(VENDORS),
    default=None,
    help="Only this vendor [default: every vendor with batches].",
)
@click.option("--full", is_flag=True, help="Re-read everything, not only what changed.")
@lake_option
@format_option
@expected_errors
def label_sync(vendor, full, lake, fmt) -> None:
    """Pull new statuses and labels from the vendors into `tasks`, `labels` and `events`.

    Example: flywheel label sync
    """
    import labeling
    from labeling.vendors import open_vendor

    config = load_config({"lake": lake})
    known = labeling.status(config.lake)
    names = [vendor] if vendor else sorted(set(known["vendor"])) if len(known) else []
    results = [
        labeling.sync(config.lake, open_vendor(name, config.lake, config.labeling), full=full)
        for name in names
    ]
    if fmt == "json":
        console.print_json([r.as_dict() for r in results])
        return
    for r in results:
        console.line(
            f"{r.vendor}: {r.changes} changes, {r.labeled} newly labeled, {r.tasks} tasks tracked"
        )
    if not results:
        console.line("no batches yet: `flywheel label submit` first")


@label.command("status")
@click.argument("batch_id", required=False)
@lake_option
@format_option
@expected_errors
def label_status(batch_id, lake, fmt) -> None:
    """Batches with progress, age and tasks past the vendor's SLA.

    Example: flywheel label status
    """
    import labeling

    config = load_config({"lake": lake})
    frame = labeling.status(config.lake, batch_id)
    if fmt == "json":
        late = labeling.overdue(config.lake)
        console.print_json(
            {
                "batches": json.loads(frame.to_json(orient="records", date_format="iso")),
                "overdue": json.loads(late.to_json(orient="records", date_format="iso")),
            }
        )
        return
    console.frame(frame, "table", BATCH_VIEW, title="labeling batches")
    late = labeling.overdue(config.lake)
    if len(late):
        console.warn(f"{len(late)} tasks past their vendor's SLA")


@label.command("webhook")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0: any."
)
@click.option(
    "--register", is_flag=True, help="Register this receiver at Label Studio (idempotent)."
)
@click.option(
    "--public-url",
    default=None,
    help="The URL Label Studio calls, when not http://HOST:PORT/flywheel/webhook (a proxy).",
)
@lake_option
@expected_errors
def label_webhook(host, port, register, public_url, lake) -> None:
    """Receive Label Studio's webhooks and sync each change into the lake within seconds.

    Every call must carry $FLYWHEEL_WEBHOOK_SECRET in the X-Flywheel-Webhook-Secret header
    (--register sets that up). Serves until Ctrl-C; keep a periodic `flywheel label sync` too,
    since Label Studio never resends a call that failed.

    Example: FLYWHEEL_WEBHOOK_SECRET=… flywheel label webhook --port 8765 --register
    """
    import logging

    from labeling import webhook
    from labeling.vendors import open_vendor

    config = load_config({"lake": lake})
    secret = webhook.secret_from_env()
    vendor = open_vendor("label-studio", config.lake, config.labeling)
    logger = logging.getLogger(webhook.log.name)
    if not logger.handlers:  # request lines and sync outcomes on stderr, through the printer
        handler = console.LogHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    webhook.serve(
        config.lake,
        vendor,
        secret=secret,
        host=host,
        port=port,
        register=register,
        public_url=public_url,
        on_ready=lambda url: console.line(
            f"listening on {url} for {vendor.location}"
            + (" (registered)" if register else "")
            + "; Ctrl-C to stop"
        ),
    )


@cli.command("track")
@click.argument("stage", type=click.Choice(["trained", "evaluated", "deployed"]))
@click.option("--model", required=True, help="The model id.")
@click.option(
    "--batch",
    "batches",
    multiple=True,
    metavar="BATCH_ID",
    help="A label batch the training run used (trained only; repeat for several).",
)
@click.option("--at", "at", default=None, metavar="ISO8601", help="When (default: now).")
@click.option("--attrs", default=None, metavar="JSON", help="Extra facts, e.g. '{\"map\": 0.7}'.")
@lake_option
@format_option
@expected_errors
def track_command(stage, model, batches, at, attrs, lake, fmt) -> None:
    """Record a stage that happens outside the platform: trained, evaluated, deployed.

    Example: flywheel track trained --model det-v7 --batch demo-1 --batch demo-2
    """
    from metrics import track
    from metrics.track import parse_attrs, parse_time

    config = load_config({"lake": lake})
    when = parse_time(at) if at else None
    path = track(config.lake, stage, model, batches=batches, at=when, attrs=parse_attrs(attrs))
    if fmt == "json":
        console.print_json(
            {
                "stage": stage,
                "model": model,
                "batches": list(batches),
                "at": when,
                "file": str(path),
            }
        )
        return
    used = f" on {len(batches)} batch{'es' if len(batches) != 1 else ''}" if batches else ""
    console.line(f"{stage}: model {model}{used} at {(when.isoformat() if when else 'now')}")


@cli.command("report")
@click.option(
    "--out",
    default=None,
    type=click.Path(),  # checked by flywheel.output: a regular file, in a folder that exists
    help="HTML file to write (replaced atomically; its folder must exist). "
    "Default: <lake>/_reports/report.html.",
)
@click.option(
    "--since",
    default=None,
    metavar="ISO8601",
    help="Only stage transitions and deployments from this time on.",
)
@click.option(
    "--alert",
    "alert_id",
    default=None,
    metavar="ALERT_ID",
    help="Instead of the report, list the entities behind one alert.",
)
@lake_option
@format_option
@expected_errors
def report_command(out, since, alert_id, lake, fmt) -> None:
    """The end-to-end cycle-time report: HTML dashboard, terminal summary, or JSON.

    Example: flywheel report --since 2026-11-01
    """
    import metrics
    from flywheel.lake import Lake
    from flywheel.output import check_output
    from metrics.track import parse_time

    config = load_config({"lake": lake})
    if alert_id:
        frame = metrics.alert_entities(config.lake, alert_id, config=config.metrics)
        console.frame(frame, fmt, title=f"alert {alert_id}: {len(frame)} entities")
        return
    if out:
        check_output(out)  # a bad --out fails before the report is built
    report = metrics.build(
        config.lake, since=parse_time(since) if since else None, config=config.metrics
    )
    if out:
        path = metrics.write_html(report, out)
    else:  # in the lake, a folder or an object store alike
        path = Lake(config.lake).put(
            "_reports/report.html", lambda p: metrics.write_html(report, p)
        )
    if fmt == "json":
        console.print_json(metrics.contract_json(report) | {"html": str(path)})
        return
    metrics.print_summary(report, str(path))


def main() -> None:
    """The `flywheel` entry point: click's own handling, except that Ctrl-C anywhere (parsing
    arguments, importing a stage, inside a command) exits 130 with one line, no traceback."""
    try:
        code = cli.main(prog_name="flywheel", standalone_mode=False)
    except click.exceptions.Abort as exc:  # click turns KeyboardInterrupt and EOF into Abort
        if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
            interrupted()
        console.warn("aborted")
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        interrupted()
    except RuntimeError as exc:
        if not _is_interrupt(exc):
            raise
        interrupted()
    sys.exit(code if isinstance(code, int) else 0)
