"""Metrics: the end-to-end cycle-time report across every stage (docs/contract.md §2 "The cycle").

>>> import metrics
>>> _ = metrics.track(lake, "trained", "det-v7", batches=[batch])
>>> report = metrics.build(lake)
>>> report.scenes, report.wip["trained"]
(6, 3)
>>> metrics.write_html(report, "report.html")  # doctest: +ELLIPSIS
PosixPath('report.html')
>>> metrics.write_report(lake, report).name  # <lake>/_reports/report.html
'report.html'
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path, PurePosixPath

import pandas as pd

from flywheel.config import MetricsConfig, load_config
from flywheel.events import now as _now
from flywheel.lake import Lake, resolve
from metrics.alerts import Alert
from metrics.cycle import STAGES
from metrics.html import write as write_html
from metrics.report import Report, build, contract_json
from metrics.summary import print_summary
from metrics.track import track

__all__ = [
    "STAGES",
    "Alert",
    "Report",
    "acknowledge",
    "alert_entities",
    "build",
    "contract_json",
    "cycle",
    "print_summary",
    "track",
    "write_html",
    "write_report",
]

REPORT_FILE = "_reports/report.html"  # in the lake, where `write_report` puts it by default


def write_report(
    lake: str | Lake | None,
    report: Report,
    out: str | os.PathLike | None = None,
    galleries: bool = True,
) -> str | Path:
    """Write `report` as HTML to `out`, by default to `<lake>/_reports/report.html` (a folder
    or an object store alike), with a gallery page of the scenes behind each alert, batch and
    selection in `galleries/` beside it (`galleries=False`: none); the path (or URI) written."""
    from metrics import galleries as _galleries

    target = resolve(lake)
    if out:
        out = Path(out)
        links = {}
        if galleries:
            folder = Lake(out.parent)  # a plain folder: pages written like any lake file
            links = _galleries.write(target, report, _galleries.FOLDER, put=folder.put)
        return write_html(report, out, links)
    links = {}
    if galleries:
        where = str(PurePosixPath(REPORT_FILE).parent / _galleries.FOLDER)
        links = _galleries.write(target, report, where)
    return target.put(REPORT_FILE, lambda p: write_html(report, p, links))


def cycle(lake: str | Lake | None = None) -> pd.DataFrame:
    """One row per scene: each stage's time (UTC) and latency (s), and its furthest stage."""
    from metrics.cycle import connect

    con = connect(resolve(lake))
    frame = con.execute("SELECT * FROM cycle ORDER BY collected, scene_id").df()
    for stage in STAGES:
        frame[stage] = pd.to_datetime(frame[stage], unit="s", utc=True)
    return frame


def alert_entities(
    lake: str | Lake | None,
    alert_id: str,
    now: dt.datetime | None = None,
    config: MetricsConfig | None = None,
) -> pd.DataFrame:
    """The scenes or tasks behind alert `alert_id` (``flywheel report --alert ID``)."""
    from metrics import acks
    from metrics.cycle import connect

    lake = resolve(lake)
    return acks.entities(
        lake, connect(lake), alert_id, now or _now(), config or load_config().metrics
    )


def acknowledge(
    lake: str | Lake | None,
    alert_id: str,
    by: str | None = None,
    *,
    via: str = "python",
    now: dt.datetime | None = None,
    config: MetricsConfig | None = None,
) -> tuple[dict, bool]:
    """Acknowledge active alert `alert_id`: the report leaves it out of `alerts` (and lists it in
    `acknowledged`) until the entities behind it change. (The entry {"id", "title", "by",
    "at"}, whether this call recorded it); a repeat records nothing and gives the same entry.
    An alert that is not active raises InputError. See `metrics.acks`."""
    from flywheel import sources
    from metrics import acks

    return acks.acknowledge(
        resolve(lake),
        alert_id,
        by or sources.user(),
        via,
        now or _now(),
        config or load_config().metrics,
    )
