"""The report as one self-contained HTML file: inline CSS and SVG, no script, nothing fetched.

>>> page = render(Report("2026-11-27T00:00:00+00:00", None, 0, [], {}, [], {}, [], [], None,
...                      "Not enough data yet to name a bottleneck.", {}, [], []))
>>> "<svg" in page and "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
True
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from html import escape
from pathlib import Path

from flywheel.output import write_output
from flywheel.redact import redact
from metrics import charts
from metrics._units import VENDOR_COLUMNS, duration, vendor_row
from metrics.report import Report

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#111827;
background:#f9fafb}
main{max-width:900px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:32px 0 8px;border-bottom:1px solid
#e5e7eb;padding-bottom:4px}
.muted{color:#6b7280;font-size:13px}
.lead{font-size:17px;background:#fff;border-left:4px solid #2563eb;padding:12px 16px;
margin:16px 0}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{background:#fff;border:1px solid #e5e7eb;
border-radius:6px;padding:10px 14px;min-width:150px}.card b{display:block;font-size:20px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px;margin:8px 0}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e5e7eb}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.alert{background:#fff;border:1px solid #fca5a5;border-left:4px solid #dc2626;
border-radius:4px;padding:8px 12px;margin:8px 0}
.alert code,code{background:#f3f4f6;padding:1px 4px;border-radius:3px;font-size:12px}
.ok{color:#16a34a}svg{display:block;margin:8px 0;background:#fff}
"""


def render(report: Report, links: Mapping[str, str] | None = None) -> str:
    """The whole page for `report`; `links` ({``alert:<id>`` | ``batch:<id>`` |
    ``selection:<name>``: href}) adds a gallery of the scenes behind each (metrics.galleries)."""
    links = links or {}
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Flywheel cycle-time report</title>",
        f"<style>{CSS}</style></head><body><main>",
        "<h1>Flywheel cycle-time report</h1>",
        f'<div class="muted">generated {escape(report.generated_at)}'
        + (f" · since {escape(report.since)}" if report.since else "")
        + f" · {report.scenes:,} scenes</div>",
        f'<p class="lead" id="bottleneck">{escape(report.bottleneck_sentence)}</p>',
        _cards(report),
        _alerts(report, links),
        _stages(report),
        _cycle(report),
        _wip(report),
        _throughput(report),
        _triggers(report),
        _vendors(report),
        _scorecard(report),
        _lineage(report),
        _licenses(report),
        _galleries(links),
        '<p class="muted">Stage times per docs/contract.md §2; a stage\'s latency is its time '
        "minus the nearest earlier stage the scene reached; percentiles interpolate linearly. "
        "Made by <code>flywheel report</code>.</p>",
        "</main></body></html>",
    ]
    return "\n".join(parts)


def write(report: Report, path: str | os.PathLike, links: Mapping[str, str] | None = None) -> Path:
    """Write the page to `path` with the one output writer (`flywheel.output`): atomically, as
    a regular file, never through a symlink or over a device; the folder must exist. Anything
    a vendor wrote into the report is redacted first."""
    return write_output(path, redact(render(report, links)))


def _cards(report: Report) -> str:
    wip = sum(report.wip.get(s, 0) for s in report.wip if s not in ("collected", "ingested"))
    cards = [
        ("cycle p50", duration(report.cycle.get("p50_s"))),
        ("cycle p90", duration(report.cycle.get("p90_s"))),
        ("scenes deployed", f"{report.cycle.get('count') or 0:,}"),
        ("in flight (mined → deployed)", f"{wip:,}"),
        ("alerts", f"{len(report.alerts)}"),
    ]
    inner = "".join(f'<div class="card"><b>{escape(v)}</b>{escape(k)}</div>' for k, v in cards)
    return f'<div class="cards">{inner}</div>'


def _alerts(report: Report, links: Mapping[str, str]) -> str:
    acked = "".join(
        f'<li id="ack-{escape(a["id"])}"><b>{escape(a["title"])}</b> '
        f'<span class="muted">acknowledged by {escape(a["by"])} at {escape(a["at"] or "")}'
        "</span></li>"
        for a in report.acknowledged
    )
    acked = f'<p class="muted">Acknowledged (until their entities change):</p><ul>{acked}</ul>' * (
        bool(report.acknowledged)
    )
    if not report.alerts:
        return '<h2 id="alerts">Alerts</h2><p class="ok">Nothing needs action.</p>' + acked

    def scenes(alert_id: str) -> str:
        href = links.get(f"alert:{alert_id}")
        return f' · <a href="{escape(href)}" data-gallery>its scenes</a>' if href else ""

    items = "".join(
        f'<div class="alert" id="alert-{escape(a["id"])}"><b>{escape(a["title"])}</b> — '
        f'{escape(a["detail"])}<br><span class="muted">since {escape(a["since"])} · '
        f'<a href="{escape(a["section"])}">see the section</a>{scenes(a["id"])} · '
        f"<code>{escape(a['command'])}</code></span></div>"
        for a in report.alerts
    )
    return f'<h2 id="alerts">Alerts ({len(report.alerts)})</h2>{items}{acked}'


def _galleries(links: Mapping[str, str]) -> str:
    """Links to the galleries of every batch and selection (alerts link theirs above)."""
    groups = {"batch": [], "selection": []}
    for key, href in links.items():
        kind, _, name = key.partition(":")
        if kind in groups:
            link = f'<a href="{escape(href)}" data-gallery>{escape(name)}</a>'
            groups[kind].append(f"<li>{link}</li>")
    if not any(groups.values()):
        return ""
    lists = "".join(
        f"<h3>{title}</h3><ul>{''.join(items)}</ul>"
        for title, items in (("Labeling batches", groups["batch"]),
                             ("Saved selections", groups["selection"]))
        if items
    )  # fmt: skip
    return (
        '<h2 id="galleries">Scenes</h2><p class="muted">A picture of every scene: look before '
        f"labeling or training on them.</p>{lists}"
    )


def _table(head: list[str], rows: list[list], numeric: set[int], row_ids=None) -> str:
    th = "".join(
        f'<th class="n">{escape(h)}</th>' if i in numeric else f"<th>{escape(h)}</th>"
        for i, h in enumerate(head)
    )
    body = []
    for r, row in enumerate(rows):
        rid = f' id="{escape(row_ids[r])}"' if row_ids else ""
        cells = "".join(
            f'<td class="n">{escape(str(v))}</td>' if i in numeric else f"<td>{escape(str(v))}</td>"
            for i, v in enumerate(row)
        )
        body.append(f"<tr{rid}>{cells}</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _stages(report: Report) -> str:
    rows = [
        [
            s["stage"],
            f"{s['count']:,}",
            duration(s["p50_s"]),
            duration(s["p90_s"]),
            duration(s["p99_s"]),
            f"{report.bottleneck_shares.get(s['stage'], 0):.0%}"
            if s["stage"] in report.bottleneck_shares
            else "-",
        ]
        for s in report.stages
    ]
    table = _table(
        ["stage", "scenes", "p50", "p90", "p99", "share of cycle"],
        rows,
        {1, 2, 3, 4, 5},
        row_ids=[f"stage-{s['stage']}" for s in report.stages],
    )
    return (
        '<h2 id="stages">Latency per stage</h2>'
        '<p class="muted">Time from the previous stage to this one, per scene. Bars: how many '
        "scenes took how long (log scale); lines: p50 (solid), p90 (dashed), p99 (dotted).</p>"
        + charts.distributions(report.stages, report.histograms)
        + table
    )


def _cycle(report: Report) -> str:
    c = report.cycle
    weeks = [w["week"] for w in report.cycle_weekly]
    head = (
        f"<p>{c.get('count') or 0:,} scenes completed the cycle (collected → deployed): p50 "
        f"{duration(c.get('p50_s'))}, p90 {duration(c.get('p90_s'))}, p99 "
        f"{duration(c.get('p99_s'))}.</p>"
    )
    if not weeks:
        return f'<h2 id="cycle">Cycle time</h2>{head}<p class="muted">No deployment yet.</p>'
    chart = charts.lines(
        weeks,
        {
            "p50": [w["p50_s"] for w in report.cycle_weekly],
            "p90": [w["p90_s"] for w in report.cycle_weekly],
        },
        "cycle-trend",
        "cycle time by week of deployment",
        y_label="cycle time (collected → deployed)",
    )
    counts = charts.lines(
        weeks,
        {"scenes deployed": [w["count"] for w in report.cycle_weekly]},
        "cycle-count",
        "scenes deployed per week",
        fmt=lambda v: f"{v:,.0f}",
        y_label="scenes / week",
    )
    return f'<h2 id="cycle">Cycle time, by week</h2>{head}{chart}{counts}'


def _wip(report: Report) -> str:
    items = [(f"{d['stage']} → {d['waiting_for']}", d["count"]) for d in report.wip_detail]
    rows = [
        [
            d["stage"],
            d["waiting_for"],
            f"{d['count']:,}",
            duration(d["age_p50_s"]),
            duration(d["age_max_s"]),
        ]
        for d in report.wip_detail
    ]
    return (
        '<h2 id="wip">Work in progress</h2>'
        '<p class="muted">Scenes whose furthest stage is this one, waiting for the next. Most '
        "ingested scenes are never mined, by design.</p>"
        + charts.bars(items, "wip", "scenes waiting at each stage", x_label="scenes waiting")
        + _table(["at", "waiting for", "scenes", "age p50", "oldest"], rows, {2, 3, 4})
    )


def _throughput(report: Report) -> str:
    weeks = sorted({r["week"] for r in report.throughput})
    if not weeks:
        return '<h2 id="throughput">Throughput</h2><p class="muted">No activity yet.</p>'
    series: dict[str, list] = {}
    for r in report.throughput:
        series.setdefault(r["stage"], [0] * len(weeks))[weeks.index(r["week"])] = r["count"]
    chart = charts.small_multiples(
        weeks, series, "throughput", "scenes reaching each stage per week", "scenes / week"
    )
    return (
        f'<h2 id="throughput">Throughput, by week</h2><p class="muted">Scenes reaching each '
        "stage per week; each panel has its own scale.</p>"
        f"{chart}"
    )


def _triggers(report: Report) -> str:
    if not report.triggers:
        return ""
    weeks = sorted({r["week"] for r in report.triggers})
    series: dict[str, list] = {}
    for r in report.triggers:
        series.setdefault(r["trigger"], [None] * len(weeks))[weeks.index(r["week"])] = r["per_hour"]
    chart = charts.small_multiples(
        weeks, series, "triggers", "trigger hits per hour driven, by week driven",
        "hits / hour driven", fmt=lambda v: f"{v:,.2f}",
    )  # fmt: skip
    rows = [
        [r["trigger"], r["week"], f"{r['hits']:,}", f"{r['hours'] or 0:,.1f}",
         "" if r["per_hour"] is None else f"{r['per_hour']:,.2f}"]
        for r in report.triggers
    ]  # fmt: skip
    table = _table(["trigger", "week", "hits", "hours driven", "hits / hour"], rows, {2, 3, 4})
    return f'<h2 id="triggers">Triggers, by week driven</h2>{chart}{table}'


def _vendors(report: Report) -> str:
    if not report.vendors:
        return '<h2 id="vendors">Labeling vendors</h2><p class="muted">No task yet.</p>'
    rows = []
    for v in report.vendors:  # the terminal's columns, with the batch count after the vendor
        name, *rest = vendor_row(v)
        rows.append([name, v["batches"], *rest])
    slas = {v["sla_s"] for v in report.vendors if v["sla_s"]}
    items = [
        (f"{v['vendor']} {k}", v[f"turnaround_{k}_s"] or 0)
        for v in report.vendors
        for k in ("p50", "p90")
    ]
    chart = charts.bars(
        items,
        "vendors",
        "turnaround per vendor against the SLA (dashed)",
        fmt=duration,
        marker=slas.pop() if len(slas) == 1 else None,
        x_label="turnaround (submitted → labeled)",
    )
    return (
        '<h2 id="vendors">Labeling vendors: turnaround vs SLA</h2>'
        + chart
        + _table(
            [VENDOR_COLUMNS[0], "batches", *VENDOR_COLUMNS[1:]],
            rows,
            {1, 2, 3, 4, 5, 6, 7, 8},
        )
    )


def _lineage(report: Report) -> str:
    if not report.lineage:
        return (
            '<h2 id="lineage">Lineage</h2><p class="muted">No model tracked yet: '
            "<code>flywheel track trained --model M --dataset NAME@N</code>.</p>"
        )
    rows = []
    for m in report.lineage:
        inputs = m["datasets"] + m["batches"]
        shown = ", ".join(inputs[-3:]) + (
            f" (+{len(inputs) - 3} earlier)" if len(inputs) > 3 else ""
        )
        rows.append(
            [
                m["model_id"],
                (m["trained_at"] or "-")[:16],
                (m["evaluated_at"] or "-")[:16],
                (m["deployed_at"] or "not deployed")[:16],
                f"{m['scenes']:,}",
                ", ".join(m["sources"]) or "-",
                shown or "-",
            ]
        )
    return '<h2 id="lineage">Lineage: which data fed which model</h2>' + _table(
        ["model", "trained", "evaluated", "deployed", "scenes", "sources", "datasets, batches"],
        rows,
        {4},
    )


def _licenses(report: Report) -> str:
    if not report.licenses:
        return (
            '<h2 id="licenses">Licenses</h2><p class="muted">No source registered: '
            "<code>flywheel source add NAME --license TEXT --until YYYY-MM-DD</code>, then "
            "<code>flywheel ingest … --source NAME</code>.</p>"
        )
    rows, ids = [], []
    for s in report.licenses:
        days = s["days_left"]
        left = "open-ended" if days is None else (f"{days}" if days >= 0 else f"ended {-days} ago")
        models = ", ".join(m + (" (deployed)" if m in s["deployed"] else "") for m in s["models"])
        rows.append(
            [
                s["source"],
                s["license"],
                ", ".join(s["uses"]),
                s["until"] or "-",
                left,
                s["status"],
                f"{s['logs']:,}",
                f"{s['scenes']:,}",
                models or "-",
            ]
        )
        ids.append(f"license-{s['source']}")
    head = ["source", "license", "uses", "until", "days left", "status", "logs", "scenes"]
    return '<h2 id="licenses">Licenses: what each source allows, and what depends on it</h2>' + (
        _table([*head, "models"], rows, {4, 6, 7}, row_ids=ids)
    )


def _scorecard(report: Report) -> str:
    if not report.scorecard:
        return '<h2 id="quality">Label quality</h2><p class="muted">No label yet.</p>'
    rows, ids = [], []
    for r in report.scorecard:
        rows.append(
            [
                r["vendor"],
                r["annotator"] or "all annotators",
                f"{r['labels']:,}",
                "-" if r["agreement"] is None else f"{r['agreement']:.0%}",
                duration(r["turnaround_p50_s"]),
                ("SUSPECT: " + (r["reason"] or "")) if r["suspect"] else "ok",
            ]
        )
        ids.append(f"quality-{r['vendor']}-{r['annotator'] or 'all'}")
    head = ["vendor", "annotator", "labels", "agree with evidence", "turnaround p50", "verdict"]
    return '<h2 id="quality">Vendor scorecard: turnaround and label quality</h2>' + _table(
        head, rows, {2, 3}, row_ids=ids
    )
