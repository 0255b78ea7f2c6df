"""How the report writes times and durations (UTC, and units people read)."""

from __future__ import annotations

import datetime as dt


def iso(seconds: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC.

    >>> iso(0)
    '1970-01-01T00:00:00+00:00'
    """
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


def duration(seconds: float | None) -> str:
    """A duration people read: 45 s, 12 min, 5.2 h, 3.1 d.

    >>> duration(30), duration(600), duration(5 * 3600), duration(3 * 86400), duration(None)
    ('30 s', '10 min', '5.0 h', '3.0 d', '-')
    """
    if seconds is None or seconds != seconds:
        return "-"
    seconds = float(seconds)
    if abs(seconds) < 90:
        return f"{seconds:.0f} s"
    if abs(seconds) < 5400:
        return f"{seconds / 60:.0f} min"
    if abs(seconds) < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


VENDOR_COLUMNS = ["vendor", "tasks", "labeled", "p50", "p90", "SLA", "within SLA", "open past SLA"]


def vendor_row(vendor: dict) -> list:
    """One vendor of `Report.vendors` as the dashboard and the terminal show it."""
    within = vendor["within_sla"]
    return [
        vendor["vendor"],
        f"{vendor['tasks']:,}",
        f"{vendor['labeled']:,}",
        duration(vendor["turnaround_p50_s"]),
        duration(vendor["turnaround_p90_s"]),
        duration(vendor["sla_s"]),
        "-" if within is None else f"{within:.0%}",
        vendor["open_past_sla"],
    ]
