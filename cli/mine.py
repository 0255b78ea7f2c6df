"""`flywheel index` and the `flywheel mine` group: find scenes, save selections."""

from __future__ import annotations

from collections.abc import Callable

import click

from cli._common import expected_errors, format_option, lake_option
from flywheel import console
from flywheel.config import load_config

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
                "--html",
                "html_out",
                metavar="FILE",
                default=None,
                type=click.Path(dir_okay=False),
                help="Also write a gallery of the scenes (a picture each) as one HTML file.",
            ),
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


def _show(
    df, fmt: str, save_as: str | None, replace: bool, lake, html_out=None, columns=SCENE_COLUMNS
) -> None:
    import mining

    miner = mining.open(lake)
    if html_out and "scene_id" not in df.columns:
        raise click.UsageError("--html draws scenes: the result needs a scene_id column")
    if save_as:
        miner.save(save_as, df, replace=replace)
        console.warn(f"saved {len(df)} scenes as selection {save_as!r}")
    if html_out:
        written = miner.show(df).save(html_out)
        console.warn(f"wrote a gallery of {len(df)} scenes to {written}")
    console.frame(df, fmt, columns, title=df.attrs.get("query"))


@click.command("index")
@lake_option
@click.option(
    "--kind",
    type=click.Choice(("auto", "flat", "ivf", "hnsw", "ivfpq")),
    default="auto",
    show_default=True,
    help="auto: exact while that is fast, HNSW beyond; ivfpq: on disk, for lakes beyond memory.",
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
    import mining

    where = load_config({"lake": lake}).lake
    manifest = mining.publish_index(
        where, kind, full=full, shard_size=shard_size, scheduler=scheduler
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


@click.group()
def mine() -> None:
    """Find scenes: SQL, similar to a scene, rare, diverse. Each can --save a selection."""


@mine.command("sql")
@click.argument("query")
@mine_options
@expected_errors
def mine_sql(query, lake, save_as, replace, html_out, fmt) -> None:
    """Run a DuckDB query; every lake table is a view of the same name.

    Example: flywheel mine sql "SELECT scene_id, min_accel FROM scenes WHERE min_accel < -4"
    """
    import mining

    lake = load_config({"lake": lake}).lake
    df = mining.open(lake).sql(query)
    df.attrs.setdefault("query", query)
    if "embedding" in df.columns:
        df = df.drop(columns=["embedding"])
    _show(df, fmt, save_as, replace, lake, html_out, columns=None)


@mine.command("similar")
@click.argument("scene_id")
@click.option("--k", default=50, show_default=True, type=click.IntRange(1))
@click.option("--where", default=None, metavar="SQL", help="Filter: a DuckDB boolean expression.")
@mine_options
@expected_errors
def mine_similar(scene_id, k, where, lake, save_as, replace, html_out, fmt) -> None:
    """Scenes most like SCENE_ID (itself excluded), best first.

    Example: flywheel mine similar LOG-00003 --k 20 --where "n_pedestrians > 0"
    """
    import mining

    lake = load_config({"lake": lake}).lake
    found = mining.open(lake).similar(scene_id, k=k, where=where)
    _show(found, fmt, save_as, replace, lake, html_out)


@mine.command("rare")
@click.option("--k", default=100, show_default=True, type=click.IntRange(1))
@click.option("--where", default=None, metavar="SQL", help="Filter: a DuckDB boolean expression.")
@mine_options
@expected_errors
def mine_rare(k, where, lake, save_as, replace, html_out, fmt) -> None:
    """The most unusual scenes first (far from their nearest neighbours).

    Example: flywheel mine rare --k 20 --save rare-batch
    """
    import mining

    lake = load_config({"lake": lake}).lake
    _show(mining.open(lake).rare(k=k, where=where), fmt, save_as, replace, lake, html_out)


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
def mine_diverse(source, n, weight, lake, save_as, replace, html_out, fmt) -> None:
    """A spread-out subset of a selection: covers the space instead of repeating one situation.

    Example: flywheel mine diverse --from rare-batch --n 10 --save labeling-batch-1
    """
    import mining

    lake = load_config({"lake": lake}).lake
    found = mining.open(lake).diverse(source, n=n, weight=weight)
    _show(found, fmt, save_as, replace, lake, html_out)


@mine.command("trigger")
@click.argument("name")
@mine_options
@expected_errors
def mine_trigger(name, lake, save_as, replace, html_out, fmt) -> None:
    """The scenes that overlap the hits of trigger NAME (each once, in time order).

    Example: flywheel mine trigger hard_brake_ped --save brake-ped
    """
    import mining

    lake = load_config({"lake": lake}).lake
    _show(mining.open(lake).trigger_scenes(name), fmt, save_as, replace, lake, html_out)
