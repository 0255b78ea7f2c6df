"""Commands of the loop measured: track (stages outside the platform), report."""

from __future__ import annotations

import click

from cli._common import expected_errors, format_option, lake_option
from flywheel import console
from flywheel.config import load_config


@click.command("track")
@click.argument("stage", type=click.Choice(["trained", "evaluated", "deployed"]))
@click.option("--model", required=True, help="The model id.")
@click.option(
    "--batch",
    "batches",
    multiple=True,
    metavar="BATCH_ID",
    help="A label batch the training run used (trained only; repeat for several).",
)
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    metavar="NAME@N",
    help="A dataset version the training run used (trained only; repeat for several).",
)
@click.option("--by", default=None, help="Who trained it (trained only) [default: the user].")
@click.option("--code", default=None, help="The code version, e.g. a git sha (trained only).")
@click.option("--params", default=None, metavar="JSON", help="Training parameters (trained only).")
@click.option("--at", "at", default=None, metavar="ISO8601", help="When (default: now).")
@click.option("--attrs", default=None, metavar="JSON", help="Extra facts, e.g. '{\"map\": 0.7}'.")
@lake_option
@format_option
@expected_errors
def track_command(stage, model, batches, datasets, by, code, params, at, attrs, lake, fmt) -> None:
    """Record a stage that happens outside the platform: trained, evaluated, deployed.

    Example: flywheel track trained --model det-v7 --dataset peds@3 --code 1a2b3c
    """
    from flywheel.errors import UsageError
    from metrics import track
    from metrics.track import parse_attrs, parse_time

    if stage != "trained" and (by or code or params):
        raise UsageError("--by, --code and --params describe a training run: `track trained`")
    config = load_config({"lake": lake})
    when = parse_time(at) if at else None
    path = track(
        config.lake,
        stage,
        model,
        batches=batches,
        at=when,
        attrs=parse_attrs(attrs),
        datasets=datasets,
        by=by,
        code=code,
        params=parse_attrs(params, "--params") if params else None,
    )
    if fmt == "json":
        console.print_json(
            {
                "stage": stage,
                "model": model,
                "datasets": list(datasets),
                "batches": list(batches),
                "at": when,
                "file": str(path),
            }
        )
        return
    inputs = [*datasets, *batches]
    used = f" on {', '.join(inputs)}" if inputs else ""
    console.line(f"{stage}: model {model}{used} at {(when.isoformat() if when else 'now')}")


@click.command("report")
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
    path = metrics.write_report(config.lake, report, out)
    if fmt == "json":
        console.print_json(metrics.contract_json(report) | {"html": str(path)})
        return
    metrics.print_summary(report, str(path))
