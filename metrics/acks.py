"""Acknowledged alerts: a person saw an alert and took it on; the report leaves it out of
``alerts`` until the set of entities behind it changes.

An acknowledgement is one ``events`` row: ``entity_id`` the alert id, stage ``acknowledged``,
``attrs`` ``{"by", "via", "digest", "entities"}`` where ``digest`` is the SHA-256 of the sorted
ids of the entities behind the alert when it was acknowledged (the rows of ``flywheel report
--alert ID``). The report compares it with the digest of the entities now: the same set keeps
the alert acknowledged (listed in ``acknowledged`` with who and when), a task more gone late or
a scene more stuck brings the alert back.

>>> import metrics
>>> report = metrics.build(lake)
>>> [a["id"] for a in report.acknowledged]
[]
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import duckdb
import pandas as pd

from flywheel import events
from flywheel.config import MetricsConfig
from flywheel.errors import InputError
from flywheel.lake import Lake

STAGE = "acknowledged"
# the columns that name an entity behind an alert, in this order (tasks: batch and scene)
ENTITY_COLUMNS = ("batch_id", "scene_id", "annotator", "model")


def entities(
    lake: Lake,
    con: duckdb.DuckDBPyConnection,
    alert_id: str,
    now: dt.datetime,
    config: MetricsConfig,
) -> pd.DataFrame:
    """The entities behind `alert_id` (``flywheel report --alert ID``), worst first."""
    from metrics import alerts

    if alert_id.startswith("quality:"):
        from labeling.quality import row_labels

        return row_labels(lake, alert_id)
    return alerts.entities(con, alert_id, now, config)


def digest(frame: pd.DataFrame) -> tuple[str, int]:
    """(SHA-256 of the sorted entity ids, how many) of an `entities` frame."""
    columns = [c for c in ENTITY_COLUMNS if c in frame.columns]
    if columns:
        ids = {"\x1f".join(str(v) for v in row) for row in frame[columns].itertuples(index=False)}
    else:  # no naming column: the whole row is the entity
        ids = {json.dumps(r, sort_keys=True, default=str) for r in frame.to_dict("records")}
    text = "\n".join(sorted(ids))
    return hashlib.sha256(text.encode()).hexdigest(), len(ids)


def latest(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    """The last acknowledgement of each alert: {alert id: {"by", "at", "digest", "via"}}."""
    rows = con.execute(
        'SELECT entity_id, "at", attrs FROM events WHERE stage = $stage ORDER BY "at", entity_id',
        {"stage": STAGE},
    ).fetchall()
    out: dict[str, dict[str, Any]] = {}
    for alert_id, at, attrs in rows:
        try:
            facts = json.loads(attrs or "{}")
        except ValueError:  # a row nobody vetted: no acknowledgement
            continue
        if not isinstance(facts, dict):
            continue
        out[alert_id] = {
            "by": str(facts.get("by") or "unknown"),
            "via": facts.get("via"),
            "digest": facts.get("digest"),
            "at": at.astimezone(dt.UTC).isoformat() if at is not None else None,
        }
    return out


def split(
    lake: Lake,
    con: duckdb.DuckDBPyConnection,
    alerts: list[dict[str, Any]],
    now: dt.datetime,
    config: MetricsConfig,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(active alerts, acknowledged ones as {"id", "title", "by", "at"}) of `alerts`."""
    acks = latest(con)
    active, acknowledged = [], []
    for alert in alerts:
        ack = acks.get(alert["id"])
        if ack is not None and ack["digest"] == _digest_now(lake, con, alert["id"], now, config):
            acknowledged.append(
                {"id": alert["id"], "title": alert["title"], "by": ack["by"], "at": ack["at"]}
            )
        else:
            active.append(alert)
    return active, acknowledged


def _digest_now(
    lake: Lake, con: duckdb.DuckDBPyConnection, alert_id: str, now: dt.datetime, config
) -> str | None:
    try:
        return digest(entities(lake, con, alert_id, now, config))[0]
    except InputError:  # an alert whose entities cannot be listed stays active
        return None


def acknowledge(
    lake: Lake,
    alert_id: str,
    by: str,
    via: str,
    now: dt.datetime,
    config: MetricsConfig,
) -> tuple[dict[str, Any], bool]:
    """Acknowledge active alert `alert_id` as `by`: (its `acknowledged` entry, whether this
    call recorded it). An alert already acknowledged for the same entities records nothing and
    gives the same entry; one that is not active is an InputError with ``not_found``."""
    from metrics.cycle import connect
    from metrics.report import build

    with lake.lock("metrics-acknowledge"):
        report = build(lake, now=now, config=config)
        for entry in report.acknowledged:
            if entry["id"] == alert_id:
                return entry, False
        if alert_id not in {a["id"] for a in report.alerts}:
            raise InputError(
                f"no active alert {alert_id!r}; active: "
                f"{', '.join(a['id'] for a in report.alerts) or 'none'}",
                alert_id=alert_id,
                not_found=True,
            )
        con = connect(lake)
        sha, n = digest(entities(lake, con, alert_id, now, config))
        name = hashlib.sha256(f"{alert_id}\n{sha}".encode()).hexdigest()[:20]
        events.record(
            lake,
            [alert_id],
            STAGE,
            at=now,
            attrs={"by": by, "via": via, "digest": sha, "entities": n},
            name=f"acknowledged-{name}",  # the same acknowledgement twice is one file
        )
        report = build(lake, now=now, config=config)
        for entry in report.acknowledged:
            if entry["id"] == alert_id:
                return entry, True
    raise InputError(f"alert {alert_id!r} changed while it was acknowledged; try again")
