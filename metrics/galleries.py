"""The report's galleries: the scenes behind each alert, each labeling batch and each saved
selection, one page of pictures each (`mining.gallery`), written beside the report and linked
from it, so a person looks at the scenes before paying for them or acting on an alert.

Pages are `galleries/<kind>-<name>.html` next to the report (in the lake's `_reports/` by
default); each holds at most `LIMIT` scenes, and says how many there are in all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import pandas as pd

from flywheel.lake import Lake
from flywheel.names import file_stem
from metrics.report import Report

LIMIT = 100  # scenes per gallery page: a page a person scrolls, a few MB at most
FOLDER = "galleries"


def scenes_behind(
    lake: Lake, report: Report, now: dt.datetime | None = None
) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """(key, title, scenes) for every alert, batch and selection with scenes; `key` is
    ``alert:<id>``, ``batch:<id>`` or ``selection:<name>``, `scenes` has `scene_id`."""
    import labeling
    import mining
    from metrics import alert_entities

    for alert in report.alerts:
        try:
            entities = alert_entities(lake, alert["id"], now)
        except Exception:  # an alert without scenes behind it (a license) has no gallery
            continue
        if "scene_id" in entities:
            frame = entities.drop_duplicates("scene_id")
            yield f"alert:{alert['id']}", f"alert {alert['id']}: {alert['title']}", frame
    outbox = labeling.batches(lake)
    if len(outbox):
        for batch_id, rows in outbox.groupby("batch_id", sort=True):
            yield f"batch:{batch_id}", f"batch {batch_id}", rows[["scene_id"]]
    miner = mining.open(lake)
    for name in miner.selections():
        yield f"selection:{name}", f"selection {name}", miner.selection(name)


def write(
    lake: Lake,
    report: Report,
    folder: str,
    now: dt.datetime | None = None,
    put: Callable[[str, Callable[[Path], object]], object] | None = None,
) -> dict[str, str]:
    """Write every gallery page under `folder` (a path in the lake, or for `put`: a
    `Lake.put`-like writer of another folder); {key: the page's path relative to the report,
    which sits in `folder`'s parent}."""
    from mining.gallery import gallery

    put = put or lake.put
    links: dict[str, str] = {}
    for key, title, frame in scenes_behind(lake, report, now):
        shown = frame.head(LIMIT)
        heading = title if len(frame) <= LIMIT else f"{title} (the first {LIMIT} of {len(frame)})"
        page = gallery(lake, shown, title=heading)
        name = f"{file_stem(key.replace(':', '-'))}.html"
        put(f"{folder}/{name}", page.save)
        links[key] = str(PurePosixPath(PurePosixPath(folder).name) / name)
    return links


__all__ = ["LIMIT", "scenes_behind", "write"]
