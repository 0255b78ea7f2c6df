"""`flywheel label quality` and `flywheel label reject`: labels checked against the lake's
evidence, and the bad ones kept out of new dataset versions."""

from __future__ import annotations

import click

from cli._common import expected_errors, format_option, lake_option
from flywheel import console
from flywheel.config import load_config


@click.command("quality")
@click.option("--batch", default=None, metavar="BATCH_ID", help="Only this batch's row.")
@click.option("--vendor", default=None, help="Only this vendor's rows.")
@click.option(
    "--labels",
    "row_id",
    default=None,
    metavar="ROW_ID",
    help="Instead, list the labels behind one row or alert: quality:VENDOR:ANNOTATOR or "
    "quality:batch:BATCH_ID.",
)
@click.option("--all", "show_all", is_flag=True, help="Every row, not only suspect ones.")
@lake_option
@format_option
@expected_errors
def label_quality(batch, vendor, row_id, show_all, lake, fmt) -> None:
    """Check every label against the scene's evidence; name suspect annotators and batches.

    Example: flywheel label quality --vendor simulated
    """
    from labeling import quality

    target = load_config({"lake": lake}).lake
    if row_id:
        frame = quality.row_labels(target, row_id)
        columns = ["batch_id", "annotator", "scene_id", "completed_at", "given", "expected"]
        console.frame(frame, fmt, columns=[*columns, "agree"], title=f"{row_id}: {len(frame)}")
        return
    rows = quality.quality(target, batch=batch, vendor=vendor)
    if fmt == "json":
        console.print_json(rows)
        return
    shown = rows if show_all or batch else [r for r in rows if r["suspect"]]
    console.table(
        [
            (
                r["vendor"],
                r["annotator"] or "-",
                r["batch_id"] or "-",
                r["labels"],
                f"{r['agreement']:.0%}",
                "SUSPECT" if r["suspect"] else "ok",
                r["reason"] or "",
            )
            for r in shown
        ],
        ["vendor", "annotator", "batch", "labels", "agreement", "verdict", "why"],
        title=f"{sum(r['suspect'] for r in rows)} suspect of {len(rows)} rows",
    )


@click.command("reject")
@click.argument("batch_id")
@click.option("--annotator", default=None, help="Only this annotator's labels of the batch.")
@click.option("--reason", default=None, help="Why, for the record.")
@click.option("--relabel", is_flag=True, help="Send the scenes again (see --vendor).")
@click.option(
    "--vendor",
    default="simulated",
    show_default=True,
    type=click.Choice(["simulated", "label-studio"]),
    help="Where --relabel sends them.",
)
@lake_option
@format_option
@expected_errors
def label_reject(batch_id, annotator, reason, relabel, vendor, lake, fmt) -> None:
    """Keep a batch's labels (or one annotator's) out of every new dataset version.

    Example: flywheel label reject demo-1a2b --annotator chen.w --relabel
    """
    from labeling import quality
    from labeling.vendors import open_vendor

    config = load_config({"lake": lake})
    rejected = quality.reject(config.lake, batch_id, annotator=annotator, reason=reason)
    submitted = None
    if relabel:
        vendor_ = open_vendor(vendor, config.lake, config.labeling)
        submitted = quality.relabel(
            config.lake, rejected, vendor_, batch_size=config.labeling.batch_size
        )
    if fmt == "json":
        console.print_json(
            rejected | {"relabel": submitted.as_dict() if submitted is not None else None}
        )
        return
    who = f" of {annotator}" if annotator else ""
    console.line(
        f"rejected {rejected['labels']} labels{who} in {batch_id} "
        f"({len(rejected['scenes'])} scenes): no new dataset version takes them"
    )
    if submitted is not None:
        console.line(f"sent {submitted.scenes} scenes again to {vendor}")
