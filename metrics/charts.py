"""Inline SVG charts for the report: no script, no font or file fetched, readable anywhere.

Each function returns one ``<svg>`` element (a string) with a ``<title>`` for screen readers
and ``data-chart`` naming it, so tests and people can find it.

>>> svg = bars([("a", 3), ("b", 1)], "wip")
>>> svg.startswith("<svg") and svg.count("<rect") >= 2
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from metrics._units import duration

PALETTE = ("#2563eb", "#f97316", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#4b5563")
AXIS = "#9ca3af"
TEXT = 'font-family="system-ui, sans-serif" font-size="11" fill="#374151"'
# the log time axis spans 1 s .. 1000 d; ticks people read
TICKS = [
    (1, "1 s"),
    (60, "1 min"),
    (3600, "1 h"),
    (86400, "1 d"),
    (7 * 86400, "1 w"),
    (30 * 86400, "30 d"),
    (365 * 86400, "1 y"),
]
LOG_MIN, LOG_MAX = 0.0, math.log10(1000 * 86400)


def _svg(name: str, width: int, height: int, title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" data-chart="{escape(name)}" role="img" '
        f'viewBox="0 0 {width} {height}" width="100%" style="max-width:{width}px">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def _log_x(seconds: float, x0: float, width: float, lo: float, hi: float) -> float:
    value = math.log10(max(seconds, 1.0))
    return x0 + (min(max(value, lo), hi) - lo) / (hi - lo) * width


def _log_range(values: Sequence[float]) -> tuple[float, float]:
    """A log10 axis range covering `values`, whole decades, at least 2 decades wide."""
    positive = [math.log10(max(v, 1.0)) for v in values if v is not None]
    if not positive:
        return LOG_MIN, 4.0
    lo, hi = math.floor(min(positive)), math.ceil(max(positive) + 1e-9)
    if hi - lo < 2:
        lo, hi = max(0, hi - 2), max(hi, 2)
    return float(lo), float(hi)


def _time_axis(x0: float, width: float, y: float, lo: float, hi: float) -> list[str]:
    out = [f'<line x1="{x0}" y1="{y}" x2="{x0 + width}" y2="{y}" stroke="{AXIS}"/>']
    for seconds, label in TICKS:
        if lo <= math.log10(seconds) <= hi:
            x = _log_x(seconds, x0, width, lo, hi)
            out.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}" stroke="{AXIS}"/>')
            out.append(f'<text x="{x:.1f}" y="{y + 15}" text-anchor="middle" {TEXT}>{label}</text>')
    return out


def distributions(
    stages: Sequence[dict], histograms: dict[str, list], name: str = "latency"
) -> str:
    """One row per stage: a log-binned histogram of its latency, p50/p90/p99 marked."""
    rows = [s for s in stages if s.get("p50_s") is not None]
    width, left, right, row_h = 760, 90, 20, 44
    plot = width - left - right
    values = [v for s in rows for v in (s["p50_s"], s["p99_s"])]
    values += [b[0] for s in rows for b in histograms.get(s["stage"], [])]
    lo, hi = _log_range(values)
    height = row_h * max(len(rows), 1) + 34
    body: list[str] = []
    for i, stage in enumerate(rows):
        top = 8 + i * row_h
        bins = histograms.get(stage["stage"], [])
        peak = max((n for _, n in bins), default=1)
        body.append(
            f'<text x="{left - 8}" y="{top + row_h / 2}" text-anchor="end" {TEXT}>'
            f"{escape(stage['stage'])}</text>"
        )
        step = plot / ((hi - lo) * 4)  # 4 bins per decade
        for lower, n in bins:
            x = _log_x(lower, left, plot, lo, hi)
            h = (row_h - 12) * n / peak
            body.append(
                f'<rect x="{x:.1f}" y="{top + row_h - 8 - h:.1f}" width="{max(step - 1, 1):.1f}" '
                f'height="{h:.1f}" fill="{PALETTE[0]}" fill-opacity="0.55">'
                f"<title>{escape(stage['stage'])} {duration(lower)}+: {n}</title></rect>"
            )
        for key, dash, color in (
            ("p50_s", "", "#111827"),
            ("p90_s", "4 3", PALETTE[1]),
            ("p99_s", "1 3", PALETTE[4]),
        ):
            x = _log_x(stage[key], left, plot, lo, hi)
            body.append(
                f'<line x1="{x:.1f}" y1="{top + 2}" x2="{x:.1f}" y2="{top + row_h - 8}" '
                f'stroke="{color}" stroke-width="2" stroke-dasharray="{dash}">'
                f"<title>{key[:3]} {duration(stage[key])}</title></line>"
            )
    body += _time_axis(left, plot, height - 26, lo, hi)
    body.append(
        f'<text x="{left + plot}" y="{height - 1}" text-anchor="end" {TEXT}>time since the '
        "previous stage (log scale); lines: p50, p90 (dashed), p99 (dotted)</text>"
    )
    return _svg(name, width, height + 6, "latency distribution per stage (log scale)", body)


def lines(
    labels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    name: str,
    title: str,
    fmt=duration,
    y_label: str = "",
) -> str:
    """A line per series over `labels` (weeks), y from 0 (in `y_label`); points carry their
    value."""
    width, height, left, right, top, bottom = 760, 250, 80, 120, 12, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for vs in series.values() for v in vs if v is not None]
    peak = max(values, default=1.0) or 1.0
    n = max(len(labels), 1)
    x_of = (lambda i: left + plot_w / 2) if n == 1 else (lambda i: left + i * plot_w / (n - 1))
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        f'stroke="{AXIS}"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="{AXIS}"/>',
    ]
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - frac)
        body.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" {TEXT}>{fmt(peak * frac)}'
            "</text>"
        )
    every = max(1, math.ceil(n / 8))
    for i, label in enumerate(labels):
        if i % every == 0 or i == n - 1:
            body.append(
                f'<text x="{x_of(i):.1f}" y="{top + plot_h + 16}" text-anchor="middle" {TEXT}>'
                f"{escape(label[5:] if len(label) == 10 else label)}</text>"
            )
    body.append(
        f'<text x="{left + plot_w}" y="{height - 8}" text-anchor="end" {TEXT}>'
        "week starting (MM-DD)</text>"
    )
    if y_label:
        body.append(
            f'<text x="12" y="{top + plot_h / 2:.0f}" text-anchor="middle" {TEXT} '
            f'transform="rotate(-90 12 {top + plot_h / 2:.0f})">{escape(y_label)}</text>'
        )
    for k, (key, vs) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        points = [
            (x_of(i), top + plot_h * (1 - v / peak)) for i, v in enumerate(vs) if v is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            body.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>'
            )
        for (x, y), (label, v) in zip(
            points,
            [(lb, v) for lb, v in zip(labels, vs, strict=True) if v is not None],
            strict=True,
        ):
            body.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}">'
                f"<title>{escape(key)} {escape(label)}: {fmt(v)}</title></circle>"
            )
        y = top + 10 + 16 * k
        body.append(
            f'<rect x="{width - right + 10}" y="{y - 8}" width="10" height="10" fill="{color}"/>'
        )
        body.append(f'<text x="{width - right + 26}" y="{y + 1}" {TEXT}>{escape(key)}</text>')
    return _svg(name, width, height, title, body)


def small_multiples(
    labels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    name: str,
    title: str,
    unit: str,
    fmt=lambda v: f"{v:,.0f}",
) -> str:
    """One small chart per series on a shared x axis (`labels`, weeks), each with its own y
    scale from 0 labelled in `unit`: eight overlapping lines nobody reads; eight panels one
    does. Each panel is a `<g data-panel=NAME>`."""
    columns = 2 if len(series) > 1 else 1
    panel_w, panel_h, left, top, bottom, gap = 370, 110, 58, 22, 34, 20
    rows = max(1, math.ceil(len(series) / columns))
    width = columns * panel_w + (columns - 1) * gap
    height = rows * (panel_h + top + bottom) + 6
    n = max(len(labels), 1)
    plot_w, plot_h = panel_w - left - 12, panel_h
    every = max(1, math.ceil(n / 5))
    body = []
    for k, (key, values) in enumerate(series.items()):
        ox = (k % columns) * (panel_w + gap)
        oy = (k // columns) * (panel_h + top + bottom)
        color = PALETTE[k % len(PALETTE)]
        peak = max([v for v in values if v is not None], default=0) or 1.0
        x_of = (lambda i: left + plot_w / 2) if n == 1 else (lambda i: left + i * plot_w / (n - 1))
        parts = [
            f'<text x="{left}" y="{14}" {TEXT} font-weight="600">{escape(key)}</text>',
            f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
            f'stroke="{AXIS}"/>',
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="{AXIS}"/>',
            f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" {TEXT}>{fmt(peak)}</text>',
            f'<text x="{left - 6}" y="{top + plot_h + 4}" text-anchor="end" {TEXT}>0</text>',
            f'<text x="12" y="{top + plot_h / 2:.0f}" {TEXT} text-anchor="middle" '
            f'transform="rotate(-90 12 {top + plot_h / 2:.0f})">{escape(unit)}</text>',
        ]
        for i, label in enumerate(labels):
            if i % every == 0 or i == n - 1:
                edge = {0: "start", n - 1: "end"} if n > 1 else {}
                anchor = edge.get(i, "middle")
                parts.append(
                    f'<text x="{x_of(i):.1f}" y="{top + plot_h + 15}" text-anchor="{anchor}" '
                    f"{TEXT}>{escape(label[5:] if len(label) == 10 else label)}</text>"
                )
        parts.append(
            f'<text x="{left + plot_w / 2:.0f}" y="{top + plot_h + 29}" text-anchor="middle" '
            f"{TEXT}>week starting (MM-DD)</text>"
        )
        points = [
            (x_of(i), top + plot_h * (1 - v / peak), labels[i], v)
            for i, v in enumerate(values)
            if v is not None
        ]
        if points:
            area = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
            first, last = points[0][0], points[-1][0]
            parts.append(
                f'<polygon points="{first:.1f},{top + plot_h} {area} {last:.1f},{top + plot_h}" '
                f'fill="{color}" fill-opacity="0.12"/>'
            )
            parts.append(
                f'<polyline points="{area}" fill="none" stroke="{color}" stroke-width="2"/>'
            )
        for x, y, label, v in points:
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}">'
                f"<title>{escape(key)} {escape(label)}: {fmt(v)} {escape(unit)}</title></circle>"
            )
        body.append(
            f'<g data-panel="{escape(key)}" transform="translate({ox},{oy})">{"".join(parts)}</g>'
        )
    return _svg(name, width, height, title, body)


def bars(
    items: Sequence[tuple[str, float]],
    name: str,
    title: str = "",
    fmt=lambda v: f"{v:,.0f}",
    marker: float | None = None,
    x_label: str = "",
) -> str:
    """Horizontal bars, one per item, value at the end (in `x_label`); `marker` draws a
    reference line."""
    width, left, right, row_h = 760, 130, 90, 24
    plot = width - left - right
    peak = max([v for _, v in items if v is not None] + [marker or 0, 1e-9])
    height = row_h * max(len(items), 1) + 12 + (16 if x_label else 0)
    body = []
    for i, (label, value) in enumerate(items):
        y = 6 + i * row_h
        w = plot * (value or 0) / peak
        body.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" {TEXT}>{escape(label)}</text>'
        )
        body.append(
            f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" '
            f'fill="{PALETTE[0]}"><title>{escape(label)}: {fmt(value or 0)}</title></rect>'
        )
        body.append(f'<text x="{left + w + 6:.1f}" y="{y + 15}" {TEXT}>{fmt(value or 0)}</text>')
    if marker:
        x = left + plot * marker / peak
        body.append(
            f'<line x1="{x:.1f}" y1="2" x2="{x:.1f}" y2="{height - 4}" stroke="{PALETTE[4]}" '
            f'stroke-width="2" stroke-dasharray="5 3"><title>SLA {fmt(marker)}</title></line>'
        )
    if x_label:
        body.append(
            f'<text x="{left + plot}" y="{height - 3}" text-anchor="end" {TEXT}>'
            f"{escape(x_label)}</text>"
        )
    return _svg(name, width, height, title or name, body)
