"""Label Studio's sync cursor and its two read paths: the cursor's semantics on scripted server
answers (ties on the cursor's own tick, reads spanning several pages, old cursors), then the
real server: nothing changed lists nothing, and a full read by export snapshot writes the same
lake as the incremental listing."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

import labeling
from labeling import _store
from labeling.vendors.label_studio import LabelStudioVendor

from .test_label_studio import NO_WAIT, annotate, api, count, vendor_tasks

T = dt.datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=dt.UTC)


def z(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def task(task_id: int, updated: dt.datetime, labeled: bool = False) -> dict:
    """A task as Label Studio lists it (CHANGE_FIELDS)."""
    annotations = []
    if labeled:
        annotations = [
            {
                "id": task_id * 10,
                "created_at": z(updated),
                "updated_at": z(updated),
                "result": [{"value": {"choices": ["cut_in"]}}],
                "completed_by": 1,
                "was_cancelled": False,
            }
        ]
    return {
        "id": task_id,
        "data": {"scene_id": f"s{task_id}", "batch_id": "b"},
        "created_at": z(T - dt.timedelta(hours=1)),
        "updated_at": z(updated),
        "completed_at": z(updated) if labeled else None,
        "annotations": annotations,
    }


class Scripted(LabelStudioVendor):
    """Label Studio's answers scripted: `newest` for the probe, `listed` for the read."""

    def __init__(self) -> None:
        super().__init__("http://ls.invalid", "k3y")
        self._project_id = "1"
        self.newest = T
        self.listed: list[dict] = []
        self.filters: list = []

    def _newest_update(self):
        return self.newest

    def _snapshot_size(self) -> int:
        return 0

    def _tasks(self, filters, fields, *, all_fields=False, page_size=1000):
        self.filters.append(filters)
        return iter(self.listed)

    def _users(self):
        return {1: "ann@example.com"}


def keys(updates) -> list[str]:
    return sorted(u.external_id for u in updates)


def test_a_change_on_the_cursors_own_tick_is_reported_and_a_seen_one_is_not():
    vendor = Scripted()
    vendor.listed = [task(1, T), task(2, T - dt.timedelta(seconds=1))]
    updates, cursor = vendor.changes(None)
    assert keys(updates) == ["1", "2"] and vendor.filters == [None]
    assert cursor == {"at": z(T), "seen": {"1": z(T)}}

    # task 3 changed on the very microsecond of the cursor, after the last read: not missed;
    # task 1, already reported in that state, is not reported again
    vendor.listed = [task(1, T), task(3, T)]
    updates, cursor = vendor.changes(cursor)
    assert keys(updates) == ["3"]
    items = vendor.filters[-1]["items"]
    assert vendor.filters[-1]["conjunction"] == "or"
    assert {(i["filter"], i["operator"], i["value"]) for i in items} == {
        ("filter:tasks:updated_at", "greater_or_equal", z(T)),
        ("filter:tasks:completed_at", "greater_or_equal", z(T)),
    }
    assert cursor == {"at": z(T), "seen": {"1": z(T), "3": z(T)}}

    # nothing new: nothing reported, the cursor stays
    updates, again = vendor.changes(cursor)
    assert updates == [] and again == cursor

    # task 1 labeled later: reported, with its label
    later = T + dt.timedelta(microseconds=1)
    vendor.newest, vendor.listed = later, [task(1, later, labeled=True)]
    updates, cursor = vendor.changes(cursor)
    assert [(u.external_id, u.status, u.annotator) for u in updates] == [
        ("1", "labeled", "ann@example.com")
    ]
    assert cursor == {"at": z(later), "seen": {"1": z(later)}}


def test_a_read_of_several_pages_resumes_from_its_start_not_its_newest_stamp():
    """While a long read runs, task 1 (an early page, already read) changes at T+5 s; a later
    page shows task 900 changed at T+6 s. Resuming after T+6 s would lose task 1's change."""
    vendor = Scripted()
    vendor.listed = [task(1, T - dt.timedelta(days=1)), task(900, T + dt.timedelta(seconds=6))]
    _, cursor = vendor.changes(None)
    assert cursor["at"] == z(T)  # the newest change when the read began
    vendor.listed = [task(1, T + dt.timedelta(seconds=5)), task(900, T + dt.timedelta(seconds=6))]
    updates, _ = vendor.changes(cursor)
    assert keys(updates) == ["1"]  # task 900 was reported in that state already


def test_an_old_plain_iso_cursor_still_works():
    vendor = Scripted()
    old = (T - dt.timedelta(seconds=1)).isoformat()  # what earlier versions stored
    vendor.listed = [task(1, T), task(2, T - dt.timedelta(milliseconds=500))]
    updates, cursor = vendor.changes(old)
    assert keys(updates) == ["1", "2"]
    assert vendor.filters[-1]["items"][0]["value"] == z(T - dt.timedelta(seconds=1))
    assert cursor == {"at": z(T), "seen": {"1": z(T)}}


def test_an_empty_project_keeps_the_cursor():
    vendor = Scripted()
    vendor.newest = None
    assert vendor.changes(None) == ([], None)
    assert vendor.changes("2026-01-01T00:00:00+00:00") == ([], "2026-01-01T00:00:00+00:00")


# -- the real server ------------------------------------------------------------------------
@pytest.fixture
def vendor(label_studio) -> LabelStudioVendor:
    return LabelStudioVendor(
        label_studio.url,
        label_studio.token,
        project_title=f"flywheel sync {uuid.uuid4().hex[:8]}",
        chunk_size=3,
    )


def labels(lake) -> list[tuple]:
    return (
        lake.connect()
        .execute(
            "SELECT scene_id, annotator, result, completed_at, external_id FROM labels ORDER BY 1"
        )
        .fetchall()
    )


def test_full_sync_by_snapshot_matches_the_incremental_listing(ls_lake, vendor, label_studio):
    scenes = count(ls_lake, "SELECT count(*) FROM scenes")
    labeling.submit(ls_lake, "brakes", vendor, batch_size=scenes, retry=NO_WAIT)
    first = labeling.sync(ls_lake, vendor, retry=NO_WAIT)  # nothing labeled: a listing
    assert (first.changes, first.labeled) == (scenes, 0)
    assert labeling.sync(ls_lake, vendor, retry=NO_WAIT).changes == 0  # nothing changed

    tasks = sorted(vendor_tasks(label_studio, vendor), key=lambda t: t["id"])
    for t in tasks[:-1]:  # all but one: mostly labeled, so a full read takes a snapshot
        annotate(label_studio, t["id"], "pedestrian_in_path")
    incremental = labeling.sync(ls_lake, vendor, retry=NO_WAIT)
    assert (incremental.changes, incremental.labeled) == (scenes - 1, scenes - 1)
    listed = labels(ls_lake)
    assert len(listed) == scenes - 1

    snapshots = []
    original = vendor._snapshot
    vendor._snapshot = lambda total: snapshots.append(total) or original(total)
    full = labeling.sync(ls_lake, vendor, full=True, retry=NO_WAIT)
    assert snapshots == [scenes]
    assert (full.changes, full.labeled, full.unknown) == (scenes, 0, 0)
    assert labels(ls_lake) == listed  # the same rows, whichever way they were read
    exports = api(label_studio, "GET", f"/api/projects/{vendor.ensure_project()}/exports/")
    assert exports == []  # the snapshot was deleted after use

    # after the full read, the incremental cursor still catches the next label, and only it
    annotate(label_studio, tasks[-1]["id"], "other")
    last = labeling.sync(ls_lake, vendor, retry=NO_WAIT)
    assert (last.changes, last.labeled) == (1, 1)
    assert labeling.sync(ls_lake, vendor, retry=NO_WAIT).changes == 0


def test_a_lake_with_an_old_cursor_syncs_and_moves_to_the_new_form(ls_lake, vendor, label_studio):
    labeling.submit(ls_lake, "brakes", vendor, retry=NO_WAIT)
    labeling.sync(ls_lake, vendor, retry=NO_WAIT)
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
    _store.write_cursor(ls_lake, vendor.name, old)  # as earlier versions wrote it
    task_id = min(t["id"] for t in vendor_tasks(label_studio, vendor))
    annotate(label_studio, task_id, "hard_brake")
    synced = labeling.sync(ls_lake, vendor, retry=NO_WAIT)
    assert synced.labeled == 1
    cursor = _store.read_cursor(ls_lake, vendor.name)
    assert set(cursor) == {"at", "seen"} and str(task_id) in cursor["seen"]
