"""Where labeling stands: batches with progress and age, tasks past the SLA, turnaround.

Every function reads the lake only (``batches``, ``tasks``), so it works in any process and
returns a pandas DataFrame. Times of tasks are the vendor's (after a sync); a batch's SLA is
the one its vendor had when the batch was planned. `now` defaults to the current UTC time
(pass the vendor's clock when it is simulated).

>>> status(lake)[["batch_id", "state", "progress"]]  # doctest: +NORMALIZE_WHITESPACE +ELLIPSIS
         batch_id      state  progress
0  first-...  submitted       1.0
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from flywheel import events
from flywheel.errors import InputError
from flywheel.lake import Lake, resolve

# a batch's tasks as the vendor sees them: every scene of the batch, task or not yet
_TASKS = """
    WITH b AS (
        SELECT batch_id, scene_id, vendor, selection, state, priority, cost, sla_s, created_at
        FROM batches
    ),
    t AS (SELECT batch_id, scene_id, external_id, status, submitted_at, completed_at FROM tasks)
    SELECT b.*, t.external_id, coalesce(t.status, 'not submitted') AS status,
           t.submitted_at, t.completed_at,
           date_diff('millisecond', t.submitted_at, coalesce(t.completed_at, $now)) / 1000.0
               AS elapsed_s,
           date_diff('millisecond', t.submitted_at, t.completed_at) / 1000.0 AS turnaround_s
    FROM b LEFT JOIN t USING (batch_id, scene_id)
"""

BATCH_COLUMNS = [
    "batch_id",
    "vendor",
    "selection",
    "state",
    "priority",
    "tasks",
    "labeled",
    "progress",
    "cost",
    "created_at",
    "submitted_at",
    "completed_at",
    "age_s",
    "sla_s",
    "past_sla",
    "turnaround_p50_s",
    "turnaround_p90_s",
    "turnaround_max_s",
]


def status(
    lake: str | Lake | None = None, batch_id: str | None = None, now: dt.datetime | None = None
) -> pd.DataFrame:
    """One row per batch, highest priority and oldest first: state, progress, age, SLA, turnaround.

    `past_sla` counts tasks whose turnaround (or age, while open) exceeds the vendor's SLA;
    `age_s` runs from the creation of its first task at the vendor (from its planning while
    unsubmitted); `submitted_at` is that creation and `completed_at` the last completion.

    >>> status(lake, now=vendor.now())[["tasks", "labeled", "past_sla"]].iloc[0].tolist()
    [3, 3, 0]
    """
    lake = resolve(lake)
    now = now or events.now()
    if not lake.files("batches"):
        frame = pd.DataFrame(columns=BATCH_COLUMNS)
    else:
        frame = (
            lake.connect()
            .execute(
                f"""
                WITH x AS ({_TASKS})
                SELECT batch_id, any_value(vendor) AS vendor, any_value(selection) AS selection,
                       any_value(state) AS state, any_value(priority) AS priority,
                       count(*) AS tasks, count(*) FILTER (status = 'labeled') AS labeled,
                       count(*) FILTER (status = 'labeled') / count(*) AS progress,
                       any_value(cost) AS cost, min(created_at) AS created_at,
                       min(submitted_at) AS submitted_at,
                       CASE WHEN count(*) FILTER (status = 'labeled') = count(*)
                            THEN max(completed_at) END AS completed_at,
                       date_diff('millisecond', coalesce(min(submitted_at), min(created_at)),
                                 $now) / 1000.0 AS age_s,
                       any_value(sla_s) AS sla_s,
                       count(*) FILTER (elapsed_s > sla_s) AS past_sla,
                       quantile_cont(turnaround_s, 0.5) AS turnaround_p50_s,
                       quantile_cont(turnaround_s, 0.9) AS turnaround_p90_s,
                       max(turnaround_s) AS turnaround_max_s
                FROM x GROUP BY batch_id
                ORDER BY any_value(priority) DESC, min(created_at), batch_id
                """,
                {"now": now},
            )
            .df()
        )
    if batch_id is not None:
        frame = frame[frame["batch_id"] == batch_id].reset_index(drop=True)
        if frame.empty:
            raise InputError(f"no batch {batch_id!r} in {lake.root}", batch_id=batch_id)
    return frame


def overdue(lake: str | Lake | None = None, now: dt.datetime | None = None) -> pd.DataFrame:
    """Tasks past their vendor's SLA: open ones older than it, and ones completed late.

    >>> len(overdue(lake, now=vendor.now()))  # the simulated vendor labels within its SLA
    0
    """
    lake = resolve(lake)
    now = now or events.now()
    if not lake.files("batches"):
        return pd.DataFrame(
            columns=[
                *("batch_id", "scene_id", "vendor", "external_id", "status", "submitted_at"),
                *("completed_at", "elapsed_s", "sla_s", "over_s"),
            ]
        )
    return (
        lake.connect()
        .execute(
            f"""
            SELECT batch_id, scene_id, vendor, external_id, status, submitted_at, completed_at,
                   elapsed_s, sla_s, elapsed_s - sla_s AS over_s
            FROM ({_TASKS}) WHERE elapsed_s > sla_s
            ORDER BY over_s DESC, batch_id, scene_id
            """,
            {"now": now},
        )
        .df()
    )


def turnaround(lake: str | Lake | None = None, by: str = "vendor") -> pd.DataFrame:
    """Turnaround (vendor completion - vendor creation) of completed tasks, by task, batch or
    vendor: count, p50, p90, mean, max seconds and how many took longer than the SLA.

    >>> turnaround(lake, by="batch")[["tasks", "past_sla"]].iloc[0].tolist()
    [3, 0]
    """
    lake = resolve(lake)
    keys = {"task": None, "batch": "batch_id, vendor", "vendor": "vendor"}
    if by not in keys:
        raise InputError(f"turnaround by {by!r}: use one of {', '.join(keys)}")
    if not lake.files("batches"):
        return pd.DataFrame(columns=["vendor", "turnaround_s"])
    done = f"SELECT * FROM ({_TASKS}) WHERE turnaround_s IS NOT NULL"
    if by == "task":
        query = (
            "SELECT batch_id, scene_id, vendor, external_id, submitted_at, completed_at, "
            f"turnaround_s, turnaround_s > sla_s AS past_sla FROM ({done}) "
            "ORDER BY batch_id, scene_id"
        )
    else:
        query = f"""
            SELECT {keys[by]}, count(*) AS tasks,
                   quantile_cont(turnaround_s, 0.5) AS p50_s,
                   quantile_cont(turnaround_s, 0.9) AS p90_s,
                   avg(turnaround_s) AS mean_s, max(turnaround_s) AS max_s,
                   count(*) FILTER (turnaround_s > sla_s) AS past_sla
            FROM ({done}) GROUP BY ALL ORDER BY ALL
        """
    return lake.connect().execute(query, {"now": events.now()}).df()
