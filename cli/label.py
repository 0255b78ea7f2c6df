"""The `flywheel label` group: selections to vendors, labels back, turnaround."""

from __future__ import annotations

import json

import click

from cli._common import expected_errors, format_option, lake_option
from flywheel import console
from flywheel.config import load_config

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


@click.group()
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
@click.option(
    "--overlap",
    type=click.FloatRange(0, 1),
    default=0.0,
    metavar="SHARE",
    help="Send this share of the scenes twice, to a second annotator (quality checks).",
)
@click.option("--gold", default=None, metavar="SELECTION", help="Trusted scenes to mix in.")
@lake_option
@format_option
@expected_errors
def label_submit(
    selection, vendor, batch_size, priority, max_cost, approval_threshold, relabel, overlap,
    gold, lake, fmt,
) -> None:  # fmt: skip
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
    options = {
        "batch_size": settings.batch_size,
        "priority": priority,
        "max_cost": settings.max_cost,
        "approval_threshold": settings.approval_threshold,
    }
    target = open_vendor(vendor, config.lake, settings)
    if overlap or gold:
        from labeling.quality import submit_checked

        if relabel:
            raise click.UsageError("--relabel and --overlap/--gold: submit them separately")
        done = submit_checked(config.lake, selection, target, overlap=overlap, gold=gold, **options)
        if fmt == "json":
            console.print_json({name: summary.as_dict() for name, summary in done.items()})
            return
        for name, summary in done.items():
            if name != "submit":
                console.line(f"{name} (checks mixed in):")
            _print_submit(summary, fmt)
        return
    summary = labeling.submit(config.lake, selection, target, **options, relabel=relabel)
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

    config = load_config({"lake": lake})
    summary = labeling.approve(config.lake, batch_id, settings=config.labeling)
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

    config = load_config({"lake": lake})
    results = labeling.sync_all(config.lake, vendor, full=full, settings=config.labeling)
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
