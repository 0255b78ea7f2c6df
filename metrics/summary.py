"""The report for a terminal: the same numbers as the HTML page, as rich tables."""

from __future__ import annotations

from flywheel import console
from metrics._units import VENDOR_COLUMNS, duration, vendor_row
from metrics.report import Report


def print_summary(report: Report, html_path: str | None = None) -> None:
    """Print the bottleneck, per-stage latency, cycle, WIP, vendors and alerts."""
    console.line((report.bottleneck_sentence, "bold"))
    shares = report.bottleneck_shares
    console.table(
        [
            (
                s["stage"],
                s["count"],
                duration(s["p50_s"]),
                duration(s["p90_s"]),
                duration(s["p99_s"]),
                f"{shares[s['stage']]:.0%}" if s["stage"] in shares else "-",
            )
            for s in report.stages
        ],
        ["stage", "scenes", "p50", "p90", "p99", "share of cycle"],
        title="latency per stage (time since the previous stage)",
    )
    c = report.cycle
    console.line(
        f"cycle (collected → deployed): {c.get('count') or 0:,} scenes, "
        f"p50 {duration(c.get('p50_s'))}, p90 {duration(c.get('p90_s'))}"
    )
    console.table(
        [
            (
                d["stage"],
                d["waiting_for"],
                d["count"],
                duration(d["age_p50_s"]),
                duration(d["age_max_s"]),
            )
            for d in report.wip_detail
            if d["count"]
        ],
        ["at", "waiting for", "scenes", "age p50", "oldest"],
        title="work in progress",
    )
    if report.vendors:
        console.table(
            [vendor_row(v) for v in report.vendors],
            VENDOR_COLUMNS,
            title="labeling turnaround",
        )
    if report.alerts:
        console.table(
            [(a["title"], a["detail"], a["since"][:16], a["command"]) for a in report.alerts],
            ["alert", "detail", "since", "show"],
            title=f"alerts ({len(report.alerts)})",
        )
    else:
        console.line("alerts: none, nothing needs action")
    if html_path:
        console.line(f"report: {html_path}")
