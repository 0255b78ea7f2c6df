"""Sources: where logs come from and on what terms (docs/contract.md §7).

A source is a row of `sources`, one file per source (`sources/<name>.parquet`): its license
text, the last day it holds (`until`, UTC; none = open-ended), the uses it allows (`train`,
`eval`, …), its owner. Every log names its source (`logs.source`); a log ingested without one,
or before sources existed, reads as `unassigned`, which has no terms.

A license has *ended* when today (UTC) is after `until`. Ingest into a revoked source is refused,
into an ended one it warns; a dataset refuses scenes of ended, revoked or non-`train` sources
(labeling.datasets). Revoking is final: the row keeps its terms and gains `revoked_at`.

>>> status({"until": None, "revoked_at": None, "uses": ["train"]}, on=dt.date(2026, 1, 1))
'active'
>>> status({"until": dt.date(2025, 12, 31), "revoked_at": None}, on=dt.date(2026, 1, 1))
'ended'
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa

from flywheel import events, schemas
from flywheel.errors import InputError, UsageError
from flywheel.lake import Lake, resolve
from flywheel.names import check_name
from flywheel.purge import purge_logs
from flywheel.sql import identifier

UNASSIGNED = schemas.UNASSIGNED
DEFAULT_USES = ("train", "eval")
TABLE = "sources"


def user() -> str:
    """Who is acting: $FLYWHEEL_USER, else the login name (on datasets, models, revokes)."""
    try:
        return os.environ.get("FLYWHEEL_USER") or getpass.getuser()
    except (KeyError, OSError):  # no login name in a bare container
        return "unknown"


def today() -> dt.date:
    """Today's date, UTC: licenses end on UTC dates."""
    return dt.datetime.now(dt.UTC).date()


def status(row: dict[str, Any], on: dt.date | None = None) -> str:
    """`revoked`, `ended` (the day `on`, default today, is after `until`) or `active`."""
    if row.get("revoked_at") is not None:
        return "revoked"
    until = row.get("until")
    if until is not None and (on or today()) > until:
        return "ended"
    return "active"


def status_sql(today: str) -> str:
    """`status` in SQL, of the `sources` row aliased `s`, with `today` the date to judge on
    (a query parameter such as ``$today``): the same rule as `status`."""
    return (
        "CASE WHEN s.revoked_at IS NOT NULL THEN 'revoked' "
        f"WHEN s.until < {today} THEN 'ended' ELSE 'active' END"
    )


def parse_date(text: str | dt.date | None) -> dt.date | None:
    """`--until` as a date: YYYY-MM-DD (UTC)."""
    if text is None or isinstance(text, dt.date):
        return text
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InputError(f"--until {text!r} is not a date: use YYYY-MM-DD (UTC)") from None


def parse_uses(uses: str | Iterable[str] | None) -> list[str]:
    """`--uses train,eval` as a sorted list of distinct names."""
    if uses is None:
        return list(DEFAULT_USES)
    items = uses.split(",") if isinstance(uses, str) else list(uses)
    cleaned = sorted({check_name(u.strip(), "use") for u in items if u.strip()})
    if not cleaned:
        raise InputError("--uses needs at least one use, e.g. train,eval")
    return cleaned


def add(
    lake: str | Lake | None,
    name: str,
    license: str,
    until: str | dt.date | None = None,
    uses: str | Iterable[str] | None = None,
    owner: str | None = None,
) -> dict[str, Any]:
    """Register the source `name`; adding it again with the same terms changes nothing, with
    other terms is refused (sources are terms people agreed to: revoke and add a new one)."""
    lake = resolve(lake)
    check_name(name, "source")
    if name == UNASSIGNED:
        raise InputError(f"{UNASSIGNED!r} is reserved for logs without a source; pick another name")
    if not license or not license.strip():
        raise InputError("a source needs its license text (--license)")
    row = {
        "name": name,
        "license": license,
        "until": parse_date(until),
        "uses": parse_uses(uses),
        "owner": owner,
        "added_at": events.now(),
        "revoked_at": None,
        "revoked_by": None,
    }
    with lake.lock(TABLE):
        existing = read(lake).get(name)
        if existing is not None:
            same = all(existing[k] == row[k] for k in ("license", "until", "uses", "owner"))
            if same and existing["revoked_at"] is None:
                return existing
            raise InputError(
                f"source {name!r} already exists with other terms"
                + (" and is revoked" if existing["revoked_at"] else "")
                + "; sources are not edited: add one under a new name"
            )
        _write(lake, row)
    return row


def read(lake: str | Lake | None) -> dict[str, dict[str, Any]]:
    """Every source by name (revoked ones too), as dicts of the `sources` columns."""
    lake = resolve(lake)
    rows = lake.read(TABLE).to_pylist()
    return {r["name"]: r for r in sorted(rows, key=lambda r: r["name"])}


def get(lake: str | Lake | None, name: str) -> dict[str, Any]:
    """One source, or InputError listing the known ones."""
    known = read(lake)
    if name not in known:
        raise InputError(f"unknown source {name!r}; {_known(known)}", source=name)
    return known[name]


def listing(lake: str | Lake | None, on: dt.date | None = None) -> pa.Table:
    """Every source with its status, days left and how many logs it holds (for `source list`)."""
    lake = resolve(lake)
    with lake.connect(snapshot=lake.snapshot([TABLE, "logs"])) as con:
        return con.sql(
            f"""
            SELECT s.name, s.license, s.until, s.uses, s.owner, s.added_at, s.revoked_at,
                {status_sql("$today")} AS status,
                CAST(s.until - $today AS BIGINT) AS days_left,
                count(l.log_id) AS logs
            FROM {identifier(TABLE)} s LEFT JOIN logs l ON l.source = s.name
            GROUP BY ALL ORDER BY s.name
            """,
            params={"today": on or today()},
        ).to_arrow_table()


def for_ingest(lake: Lake, name: str | None) -> tuple[str, str | None]:
    """The source to record on the logs an ingest writes, and a warning to print (or None).

    Unknown: UsageError listing the known sources (exit 2). Revoked: InputError (exit 1).
    Ended: a warning, since the data exists and is being catalogued; datasets still refuse it.
    """
    if name is None or name == UNASSIGNED:
        return UNASSIGNED, None
    known = read(lake)
    if name not in known:
        raise UsageError(
            f"unknown source {name!r} (--source, or [ingest] source in flywheel.toml); "
            f"{_known(known)}",
            source=name,
        )
    row = known[name]
    state = status(row)
    if state == "revoked":
        raise InputError(
            f"source {name!r} was revoked on {row['revoked_at']:%Y-%m-%d}: nothing may be "
            "ingested into it; nothing was ingested",
            source=name,
        )
    if state == "ended":
        return name, (
            f"the license of source {name!r} ended on {row['until']}; its logs are ingested, "
            "but no dataset may use them"
        )
    return name, None


def assign(lake: str | Lake | None, name: str, log_ids: Sequence[str]) -> list[str]:
    """Record `name` as the source of the logs `log_ids` (ingested ones); the ids moved."""
    lake = resolve(lake)
    if name != UNASSIGNED:
        row = get(lake, name)
        if row["revoked_at"] is not None:
            raise InputError(f"source {name!r} is revoked: no log may be assigned to it")
    if not log_ids:
        raise InputError("name the logs to assign (--log LOG_ID, repeatable)")
    with lake.connect(snapshot=lake.snapshot(["logs"])) as con:
        found = {
            r[0]: r[1]
            for r in con.execute(
                "SELECT log_id, source FROM logs WHERE list_contains($ids, log_id)",
                {"ids": list(log_ids)},
            ).fetchall()
        }
    missing = sorted(set(log_ids) - set(found))
    if missing:
        raise InputError(
            f"no log {', '.join(map(repr, missing))} in {lake.location()}; nothing was "
            "assigned (`flywheel mine sql 'SELECT log_id, source_uri FROM logs'` lists them)"
        )
    moved = []
    with lake.lock("logs"):
        for log_id in sorted(found):
            if found[log_id] == name:
                continue
            table = lake.read_file("logs", log_id)
            if table is None:  # removed meanwhile
                continue
            source = None if name == UNASSIGNED else name
            column = pa.array([source] * table.num_rows, pa.string())
            if "source" in table.column_names:
                table = table.set_column(table.column_names.index("source"), "source", column)
            else:
                table = table.append_column("source", column)
            lake.write("logs", table, name=log_id)
            moved.append(log_id)
    return moved


def revoke(
    lake: str | Lake | None, name: str, purge: bool = False, by: str | None = None
) -> dict[str, Any]:
    """Mark `name` revoked (now, by `by`; revoking again keeps the first time) and, with
    `purge`, delete every row derived from its logs (flywheel.purge; a rerun finishes a purge
    a crash cut short). What `source revoke --format json` prints (docs/contract.md §7)."""
    from flywheel.lineage import Lineage

    lake = resolve(lake)
    with lake.lock(TABLE):
        row = get(lake, name)
        if row["revoked_at"] is None:
            row = {**row, "revoked_at": events.now(), "revoked_by": by or user()}
            _write(lake, row)
    purged: dict[str, int] = {}
    if purge:
        with lake.connect(snapshot=lake.snapshot(["logs"])) as con:
            log_ids = [
                r[0]
                for r in con.execute("SELECT log_id FROM logs WHERE source = ?", [name]).fetchall()
            ]
        purged = purge_logs(lake, f"source-{name}", log_ids).purged
        with lake.lock(TABLE):
            row = {**get(lake, name), "purged_at": events.now()}
            _write(lake, row)
    models = Lineage(lake).source_models(name)
    return {
        "source": name,
        "revoked_at": row["revoked_at"].isoformat(),
        "purged": purged,
        "models": models.to_dict("records"),
    }


def _write(lake: Lake, row: dict[str, Any]) -> None:
    lake.write(TABLE, pa.Table.from_pylist([row], schema=schemas.SCHEMAS[TABLE]), name=row["name"])


def _known(known: dict[str, Any]) -> str:
    if not known:
        return "no source is registered yet (`flywheel source add NAME --license TEXT`)"
    return "known sources: " + ", ".join(known)
