import datetime as dt
import json

import pytest

import labeling
from flywheel.errors import VendorError
from labeling import SimulatedVendor

from .conftest import START


def counts(lake):
    con = lake.connect()
    return {
        table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("tasks", "labels")
    } | {
        stage: con.execute("SELECT count(*) FROM events WHERE stage = ?", [stage]).fetchone()[0]
        for stage in ("submitted", "labeled")
    }


def test_sync_writes_tasks_labels_and_events_once(lake, vendor, clock, retry):
    labeling.submit(lake, "brakes", vendor, batch_size=5, retry=retry)
    first = labeling.sync(lake, vendor, retry=retry)
    assert (first.changes, first.labeled) == (12, 0)
    assert counts(lake) == {"tasks": 12, "labels": 0, "submitted": 12, "labeled": 0}

    clock.advance(hours=4)  # the median turnaround: about half are done
    half = labeling.sync(lake, vendor, retry=retry)
    assert 0 < half.labeled < 12
    clock.advance(days=30)
    rest = labeling.sync(lake, vendor, retry=retry)
    assert half.labeled + rest.labeled == 12
    assert counts(lake) == {"tasks": 12, "labels": 12, "submitted": 12, "labeled": 12}

    # nothing changed: a rerun (and a full re-pull) adds nothing
    assert labeling.sync(lake, vendor, retry=retry).changes == 0
    labeling.sync(lake, vendor, full=True, retry=retry)
    assert counts(lake) == {"tasks": 12, "labels": 12, "submitted": 12, "labeled": 12}

    con = lake.connect()
    # events carry the vendor's own times: created at START, completed at creation + turnaround
    times = con.execute(
        """SELECT min("at"), max("at") FROM events WHERE stage = 'submitted'"""
    ).fetchone()
    assert times == (START, START)
    label = con.execute(
        "SELECT l.annotator, l.result, l.completed_at, t.completed_at, s.tags "
        "FROM labels l JOIN tasks t USING (batch_id, scene_id) JOIN scenes s USING (scene_id) "
        "ORDER BY len(s.tags) DESC LIMIT 1"
    ).fetchone()
    annotator, result, completed, task_completed, tags = label
    assert annotator and completed == task_completed and completed > START
    choices = json.loads(result)[0]["value"]["choices"]
    assert choices == (tags or ["other"])
    statuses = con.execute("SELECT DISTINCT status FROM tasks").fetchall()
    assert statuses == [("labeled",)]


def test_sync_in_another_process_sees_the_same_vendor(lake, vendor, clock, retry):
    labeling.submit(lake, "brakes", vendor, retry=retry)
    vendor.advance(dt.timedelta(days=10))  # persisted: another process's vendor sees it
    other = SimulatedVendor.for_lake(lake.root, now=clock)
    assert other.now() == START + dt.timedelta(days=10)
    assert labeling.sync(lake, other, retry=retry).labeled == 12


def test_sync_retries_transient_failures_and_keeps_the_cursor(lake, vendor, clock, retry):
    labeling.submit(lake, "brakes", vendor, retry=retry)
    vendor.fail_next(10, calls=["changes"])
    with pytest.raises(VendorError, match=r"listing changed tasks.*simulated vendor at"):
        labeling.sync(lake, vendor, retry=retry)
    assert counts(lake)["submitted"] == 0
    vendor._fail_next.clear()
    assert labeling.sync(lake, vendor, retry=retry).changes == 12


def test_status_shows_progress_age_sla_and_turnaround(lake, vendor, clock, retry):
    vendor.sla = dt.timedelta(hours=6)
    summary = labeling.submit(
        lake, "brakes", vendor, batch_size=8, approval_threshold=3.0, retry=retry
    )
    (waiting,) = summary.pending_approval
    clock.advance(hours=5)
    labeling.sync(lake, vendor, retry=retry)
    now = vendor.now()
    table = labeling.status(lake, now=now)
    assert list(table.columns[:4]) == ["batch_id", "vendor", "selection", "state"]
    row = table[table.state == "submitted"].iloc[0]
    assert row.tasks == 4 and 0 <= row.labeled <= 4
    assert row.progress == pytest.approx(row.labeled / 4)
    assert table[table.batch_id == waiting].iloc[0].labeled == 0

    clock.advance(days=2)  # every task done; the slow ones took longer than the 6 h SLA
    labeling.sync(lake, vendor, retry=retry)
    late = labeling.overdue(lake, now=vendor.now())
    per_task = labeling.turnaround(lake, by="task")
    assert len(per_task) == 4
    assert set(late.scene_id) == set(per_task[per_task.past_sla].scene_id)
    row = labeling.status(lake, now=vendor.now()).set_index("batch_id").drop(index=waiting)
    assert row.labeled.iloc[0] == 4 and row.progress.iloc[0] == 1.0
    assert row.past_sla.iloc[0] == len(late)
    assert row.turnaround_max_s.iloc[0] == pytest.approx(per_task.turnaround_s.max())
    # age runs from the first task's creation at the vendor (the vendor's clock)
    assert row.age_s.iloc[0] == (vendor.now() - START).total_seconds()

    by_vendor = labeling.turnaround(lake, by="vendor")
    assert list(by_vendor.vendor) == ["simulated"] and by_vendor.tasks[0] == 4
    assert by_vendor.p50_s[0] == pytest.approx(per_task.turnaround_s.median())
    by_batch = labeling.turnaround(lake, by="batch")
    assert len(by_batch) == 1

    # an open task past the SLA shows as overdue before it is done
    labeling.approve(lake, waiting, vendor, retry=retry)
    clock.advance(hours=7)
    labeling.sync(lake, vendor, retry=retry)
    late = labeling.overdue(lake, now=vendor.now())
    late = late[late.batch_id == waiting].set_index("scene_id")
    took = {
        scene: vendor.turnaround({"data": {"batch_id": waiting, "scene_id": scene}})
        for scene in labeling.batches(lake).query("batch_id == @waiting").scene_id
    }
    assert set(late.index) == {s for s, t in took.items() if t > dt.timedelta(hours=6)}
    still_open = {s for s, t in took.items() if t > dt.timedelta(hours=7)}
    assert still_open and {s for s in late.index if late.status[s] == "submitted"} == still_open


def test_status_on_an_empty_lake(tmp_path):
    assert labeling.status(tmp_path).empty
    assert labeling.overdue(tmp_path).empty
    assert labeling.turnaround(tmp_path).empty


def test_a_sync_that_learns_nothing_new_rewrites_nothing(lake, vendor, clock, retry):
    labeling.submit(lake, "brakes", vendor, batch_size=5, retry=retry)
    clock.advance(days=30)
    labeling.sync(lake, vendor, retry=retry)
    files = {
        p: p.stat().st_mtime_ns
        for table in ("tasks", "labels", "events")
        for p in lake.files(table)
    }
    again = labeling.sync(lake, vendor, full=True, retry=retry)  # re-reads every task
    assert again.changes == 12 and again.labeled == 0
    assert {p: p.stat().st_mtime_ns for p in files} == files
    assert counts(lake) == {"tasks": 12, "labels": 12, "submitted": 12, "labeled": 12}
