"""`flywheel source`, `flywheel dataset`, `flywheel lineage` (docs/contract.md §7): where data
came from, the fixed sets of it that models train on, and which models used what."""

from __future__ import annotations

import click

from cli._common import expected_errors, format_option, lake_option
from flywheel import console
from flywheel.config import load_config


def _lake(lake):
    return load_config({"lake": lake}).lake


def _json_ready(rows: list[dict]) -> list[dict]:
    return [{k: _plain(v) for k, v in r.items()} for r in rows]


def _plain(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return list(value)
    return value


# -- sources ---------------------------------------------------------------------------------
@click.group()
def source() -> None:
    """Where logs come from and on what terms: add, list, show, assign, revoke."""


@source.command("add")
@click.argument("name")
@click.option("--license", "license_text", required=True, help="The license terms, as text.")
@click.option("--until", default=None, metavar="YYYY-MM-DD", help="Last day it holds (UTC).")
@click.option("--uses", default=None, help="Allowed uses, comma-separated [default: train,eval].")
@click.option("--owner", default=None, help="Who answers for it.")
@lake_option
@format_option
@expected_errors
def source_add(name, license_text, until, uses, owner, lake, fmt) -> None:
    """Register a source.

    Example: flywheel source add partner-a --license "EULA v2" --until 2027-03-31 --uses train
    """
    from flywheel import sources

    row = sources.add(_lake(lake), name, license_text, until=until, uses=uses, owner=owner)
    if fmt == "json":
        console.print_json(_json_ready([row])[0])
        return
    ends = f"until {row['until']}" if row["until"] else "no end date"
    console.line(f"source {name}: {ends}; uses {', '.join(row['uses'])}")


@source.command("list")
@lake_option
@format_option
@expected_errors
def source_list(lake, fmt) -> None:
    """Every source with its status, days left and logs."""
    from flywheel import sources

    frame = sources.listing(_lake(lake)).to_pandas()
    columns = ["name", "status", "until", "days_left", "uses", "owner", "logs", "license"]
    console.frame(frame, fmt, columns=columns, title=f"{len(frame)} sources")


@source.command("show")
@click.argument("name")
@lake_option
@format_option
@expected_errors
def source_show(name, lake, fmt) -> None:
    """One source: its terms, its logs and the models trained on them."""
    from flywheel import sources
    from flywheel.lineage import lineage

    target = _lake(lake)
    row = sources.get(target, name)
    described = lineage(target).describe_source(name)
    data = _json_ready([row])[0] | {
        "status": sources.status(row),
        "logs": described["logs"],
        "datasets": described["datasets"],
        "models": described["models"],
    }
    if fmt == "json":
        console.print_json(data)
        return
    shown = {k: v for k, v in data.items() if k not in ("datasets", "models")}
    console.table(
        [(k, ", ".join(v) if isinstance(v, list) else v) for k, v in shown.items()],
        ["field", "value"],
        title=f"source {name}",
    )
    _print_models(described["models"])


@source.command("assign")
@click.argument("name")
@click.option("--log", "logs", multiple=True, required=True, metavar="LOG_ID", help="Repeatable.")
@lake_option
@format_option
@expected_errors
def source_assign(name, logs, lake, fmt) -> None:
    """Record NAME as the source of ingested logs."""
    from flywheel import sources

    moved = sources.assign(_lake(lake), name, list(logs))
    if fmt == "json":
        console.print_json({"source": name, "moved": moved})
        return
    console.line(f"{len(moved)} logs now come from {name} ({len(logs) - len(moved)} already did)")


@source.command("revoke")
@click.argument("name")
@click.option("--purge", is_flag=True, help="Also delete every row derived from its logs.")
@click.option("--by", default=None, help="Who revokes it [default: the user].")
@lake_option
@format_option
@expected_errors
def source_revoke(name, purge, by, lake, fmt) -> None:
    """Revoke a source: no new dataset or ingest may use it; --purge deletes its data.

    A purge cut short (a crash, Ctrl-C) finishes when the command runs again. The lineage
    records stay: the models trained on the source are listed.
    """
    import mining.build
    from flywheel import sources

    target = _lake(lake)
    result = sources.revoke(target, name, purge=purge, by=by)
    if purge:
        mining.build.refresh(target)  # searches now give what a full rebuild gives
    if fmt == "json":
        console.print_json(result)
        return
    console.line(f"source {name} revoked at {result['revoked_at']}")
    if purge:
        rows = sorted(result["purged"].items())
        console.table(rows, ["table", "rows deleted"], title=f"purged {name}")
    _print_models(result["models"])


def _print_models(models: list[dict]) -> None:
    if not models:
        console.line("no model was trained on it")
        return
    console.table(
        [(m["model"], "yes" if m["deployed"] else "no") for m in models],
        ["model", "deployed"],
        title=f"{len(models)} models trained on it",
    )


# -- datasets --------------------------------------------------------------------------------
@click.group()
def dataset() -> None:
    """Immutable, versioned sets of labeled scenes: create, list, show, diff, export."""


@dataset.command("create")
@click.argument("name")
@click.option("--batch", "batches", multiple=True, metavar="BATCH_ID", help="Repeatable.")
@click.option("--selection", default=None, help="A saved selection.")
@click.option("--where", default=None, metavar="SQL", help="Only scenes where this holds.")
@click.option(
    "--allow-expired",
    is_flag=True,
    help="Let scenes of ended licenses in (recorded with who allowed it).",
)
@click.option("--by", default=None, help="Who creates it [default: the user].")
@lake_option
@format_option
@expected_errors
def dataset_create(name, batches, selection, where, allow_expired, by, lake, fmt) -> None:
    """Fix the labeled scenes of batches or a selection as the next version of NAME.

    Example: flywheel dataset create peds --selection peds --where "n_pedestrians > 2"
    """
    from labeling import datasets

    version = datasets.create(
        _lake(lake),
        name,
        batches=batches,
        selection=selection,
        where=where,
        allow_expired=allow_expired,
        by=by,
    )
    if fmt == "json":
        console.print_json(version.as_dict())
        return
    console.line(version.ref)
    console.line(
        str(version) + (f"; {version.left_out} unlabeled left out" if version.left_out else "")
    )


@dataset.command("list")
@lake_option
@format_option
@expected_errors
def dataset_list(lake, fmt) -> None:
    """Every dataset version."""
    from labeling import datasets

    frame = datasets.listing(_lake(lake))
    console.frame(frame, fmt, title=f"{len(frame)} dataset versions")


@dataset.command("show")
@click.argument("ref", metavar="NAME@N")
@lake_option
@format_option
@expected_errors
def dataset_show(ref, lake, fmt) -> None:
    """One dataset version: its digest, scenes, sources and how it was made."""
    from labeling import datasets

    data = datasets.show(_lake(lake), ref)
    if fmt == "json":
        console.print_json(data)
        return
    console.table(
        [(k, ", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in data.items()],
        ["field", "value"],
        title=ref,
    )


@dataset.command("diff")
@click.argument("old", metavar="NAME@N")
@click.argument("new", metavar="NAME@M")
@lake_option
@format_option
@expected_errors
def dataset_diff(old, new, lake, fmt) -> None:
    """Scenes added, removed or relabeled from one version to another."""
    from labeling import datasets

    frame = datasets.diff(_lake(lake), old, new)
    console.frame(frame, fmt, title=f"{old} -> {new}: {len(frame)} scenes differ")


@dataset.command("export")
@click.argument("ref", metavar="NAME@N")
@click.option("--out", required=True, type=click.Path(), help="Folder to write the Parquet to.")
@lake_option
@format_option
@expected_errors
def dataset_export(ref, out, lake, fmt) -> None:
    """Write a version as Parquet for a training script (see docs/lineage.md)."""
    from labeling import datasets

    path = datasets.export(_lake(lake), ref, out)
    if fmt == "json":
        console.print_json({"dataset": ref, "file": str(path)})
        return
    console.line(f"{ref} -> {path}")


# -- lineage ---------------------------------------------------------------------------------
@click.group()
def lineage() -> None:
    """Which data trained which model, either way: model, source, dataset, log, expiring."""


def _describe(kind: str, key: str, lake, fmt: str) -> None:
    from flywheel.lineage import lineage as open_lineage

    lin = open_lineage(_lake(lake))
    data = getattr(lin, f"describe_{kind}")(key)
    if fmt == "json":
        console.print_json(data)
        return
    frame = getattr(lin, kind)(key)
    console.frame(frame, "table", title=f"lineage {kind} {key}")
    console.line(
        "; ".join(
            f"{k}: {len(v) if isinstance(v, list) else v}"
            for k, v in data.items()
            if k not in (kind, "log")
        )
    )


@lineage.command("model")
@click.argument("model")
@lake_option
@format_option
@expected_errors
def lineage_model(model, lake, fmt) -> None:
    """The datasets, batches, logs, sources and vendors behind a model."""
    _describe("model", model, lake, fmt)


@lineage.command("source")
@click.argument("name")
@lake_option
@format_option
@expected_errors
def lineage_source(name, lake, fmt) -> None:
    """The logs, dataset versions and models that depend on a source."""
    _describe("source", name, lake, fmt)


@lineage.command("dataset")
@click.argument("ref", metavar="NAME@N")
@lake_option
@format_option
@expected_errors
def lineage_dataset(ref, lake, fmt) -> None:
    """The logs and sources of a dataset version, and the models trained on it."""
    _describe("dataset", ref, lake, fmt)


@lineage.command("log")
@click.argument("log_id")
@lake_option
@format_option
@expected_errors
def lineage_log(log_id, lake, fmt) -> None:
    """A log's source, and the datasets and models that used it."""
    _describe("log", log_id, lake, fmt)


@lineage.command("expiring")
@click.option("--within", "days", type=click.IntRange(0, 36500), required=True, metavar="DAYS")
@lake_option
@format_option
@expected_errors
def lineage_expiring(days, lake, fmt) -> None:
    """Sources whose license ends within DAYS (ended ones too), and the models using them."""
    from flywheel.lineage import lineage as open_lineage

    lin = open_lineage(_lake(lake))
    if fmt == "json":
        console.print_json(lin.describe_expiring(days))
        return
    frame = lin.expiring(days)
    console.frame(frame, "table", title=f"{len(frame)} licenses end within {days} days")
