import pytest

import labeling
from flywheel.errors import InputError, TransientError, VendorError
from labeling import SimulatedVendor


class Crash(BaseException):
    """The submitting process dies (not an Exception: nothing may catch it)."""


def scene_count(lake) -> int:
    return lake.connect().execute("SELECT count(*) FROM selections").fetchone()[0]


def vendor_keys(vendor) -> list[str]:
    return [u.key for u in vendor.changes(None)[0]]


def test_submit_in_batches_creates_each_scene_once_at_the_vendor(lake, vendor, retry):
    n = scene_count(lake)
    summary = labeling.submit(lake, "brakes", vendor, batch_size=5, retry=retry)
    assert summary.scenes == n == 12
    assert [b.tasks for b in summary.batches] == [5, 5, 2]
    assert all(b.state == "submitted" for b in summary.batches)
    assert summary.cost_submitted == pytest.approx(n * 0.5)
    keys = vendor_keys(vendor)
    assert len(keys) == len(set(keys)) == n
    tasks = lake.connect().execute("SELECT count(*), count(DISTINCT external_id) FROM tasks")
    assert tasks.fetchone() == (n, n)
    # best mining score first: the first batch holds the hardest brakes
    outbox = labeling.batches(lake)
    first = outbox[outbox.batch_id == summary.batches[0].batch_id]
    assert first.score.min() >= outbox[outbox.batch_id != summary.batches[0].batch_id].score.max()

    again = labeling.submit(lake, "brakes", vendor, batch_size=5, retry=retry)
    assert again.batches == [] and again.skipped_submitted == n
    assert len(vendor_keys(vendor)) == n

    relabel = labeling.submit(lake, "brakes", vendor, batch_size=12, relabel=True, retry=retry)
    assert [b.tasks for b in relabel.batches] == [12]
    assert len(vendor_keys(vendor)) == 2 * n


def test_batch_ids_are_stable(lake, base_lake, tmp_path, clock, retry):
    first = labeling.submit(lake, "brakes", SimulatedVendor.for_lake(lake.root, now=clock))
    import shutil

    other = tmp_path / "other"
    shutil.copytree(base_lake, other)
    second = labeling.submit(other, "brakes", SimulatedVendor.for_lake(other, now=clock))
    assert [b.batch_id for b in first.batches] == [b.batch_id for b in second.batches]


def test_max_cost_refuses_and_submits_nothing(lake, vendor, retry):
    with pytest.raises(InputError, match=r"\$6\.00.*more than the maximum \$5\.00") as caught:
        labeling.submit(lake, "brakes", vendor, max_cost=5, retry=retry)
    assert caught.value.cost == 6.0
    assert vendor_keys(vendor) == [] and labeling.batches(lake).empty
    assert "submit" not in vendor.calls
    assert labeling.submit(lake, "brakes", vendor, max_cost=6, retry=retry).cost_submitted == 6


def test_batches_above_threshold_wait_for_approval(lake, vendor, retry):
    summary = labeling.submit(
        lake, "brakes", vendor, batch_size=8, approval_threshold=3.0, retry=retry
    )
    states = {b.batch_id: b.state for b in summary.batches}
    assert sorted(states.values()) == ["pending_approval", "submitted"]  # $4 waits, $2 goes
    (waiting,) = summary.pending_approval
    assert len(vendor_keys(vendor)) == 4
    # submitting again neither duplicates the waiting scenes nor submits them
    again = labeling.submit(lake, "brakes", vendor, batch_size=8, approval_threshold=3.0)
    assert (again.skipped_open, again.skipped_submitted, again.batches) == (8, 4, [])
    assert labeling.status(lake, waiting).state[0] == "pending_approval"

    approved = labeling.approve(lake, waiting, vendor, retry=retry)
    assert [(b.batch_id, b.state, b.submitted) for b in approved.batches] == [
        (waiting, "submitted", 8)
    ]
    assert len(vendor_keys(vendor)) == 12
    with pytest.raises(InputError, match="no batch 'nope'"):
        labeling.approve(lake, "nope", vendor)


def test_approve_and_sync_all_open_the_batch_vendor_themselves(lake, vendor, retry):
    assert labeling.sync_all(lake) == []  # no batches, no vendor to ask
    summary = labeling.submit(
        lake, "brakes", vendor, batch_size=8, approval_threshold=3.0, retry=retry
    )
    (waiting,) = summary.pending_approval
    assert labeling.vendor_of(lake, waiting).name == "simulated"
    approved = labeling.approve(lake, waiting)  # the batch id alone, as `label approve` does
    assert [(b.batch_id, b.state) for b in approved.batches] == [(waiting, "submitted")]
    assert len(vendor_keys(SimulatedVendor.for_lake(lake.root))) == 12  # on its own clock
    assert [s.vendor for s in labeling.sync_all(lake)] == ["simulated"]
    assert [s.vendor for s in labeling.sync_all(lake, "simulated", full=True)] == ["simulated"]


def test_crash_after_vendor_accepted_is_reconciled_without_duplicates(lake, vendor, retry):
    vendor.fail_after_accept(error=Crash())
    with pytest.raises(Crash):
        labeling.submit(lake, "brakes", vendor, batch_size=6, retry=retry)
    outbox = labeling.batches(lake)
    assert set(outbox.state) == {"submitting", "planned"}
    assert outbox.external_id.isna().all()  # the local commit never happened
    assert len(vendor_keys(vendor)) == 4  # ... but the vendor holds the first chunk

    # a new process: a fresh vendor object over the same state, the same command again
    fresh = SimulatedVendor.for_lake(lake.root, now=vendor._base_now, chunk_size=4)
    summary = labeling.submit(lake, "brakes", fresh, batch_size=6, retry=retry)
    by_id = {b.batch_id: b for b in summary.batches}
    assert sorted((b.reconciled, b.submitted) for b in by_id.values()) == [(0, 6), (4, 2)]
    assert all(b.state == "submitted" for b in summary.batches)
    keys = vendor_keys(fresh)
    assert len(keys) == len(set(keys)) == 12
    stored = lake.connect().execute("SELECT count(*), count(DISTINCT external_id) FROM tasks")
    assert stored.fetchone() == (12, 12)


def test_timeout_after_accept_is_reconciled_before_the_retry(lake, vendor, retry, sleeps):
    vendor.fail_after_accept(2)
    summary = labeling.submit(lake, "brakes", vendor, batch_size=12, retry=retry)
    assert summary.batches[0].state == "submitted"
    assert (summary.batches[0].submitted, summary.batches[0].reconciled) == (4, 8)
    assert len(sleeps) == 2
    keys = vendor_keys(vendor)
    assert len(keys) == len(set(keys)) == 12


def test_transient_failures_are_retried_with_backoff(lake, vendor, retry, sleeps):
    vendor.fail_next(3, calls=["submit"])
    summary = labeling.submit(lake, "brakes", vendor, batch_size=12, retry=retry)
    assert summary.batches[0].state == "submitted"
    assert sleeps == [1.0, 2.0, 4.0]
    assert len(vendor_keys(vendor)) == 12


def test_retry_after_is_honoured_and_jitter_applies(sleeps):
    policy = labeling.Retry(attempts=3, base_s=1.0, sleep=sleeps.append, jitter=lambda: 0.0)
    assert policy.delay(0, TransientError("429", retry_after=7)) == 7
    assert policy.delay(2, TransientError("503")) == 2.0  # half of 4 s at the lowest jitter


def test_persistent_failure_stops_clearly_and_stays_resumable(lake, vendor, retry):
    vendor.fail_next(50, calls=["submit"])
    with pytest.raises(VendorError, match=r"simulated vendor at .*after 4 attempts.*rerun") as e:
        labeling.submit(lake, "brakes", vendor, batch_size=12, retry=retry)
    assert not isinstance(e.value, TransientError)
    assert "batch brakes-" in str(e.value)
    assert set(labeling.batches(lake).state) == {"submitting"}
    vendor._fail_next.clear()  # the vendor is back

    resumed = labeling.resume(lake, vendor, retry=retry)
    assert [(b.state, b.submitted) for b in resumed.batches] == [("submitted", 12)]
    assert len(vendor_keys(vendor)) == 12


def test_non_transient_errors_are_not_retried(lake, vendor, retry, sleeps):
    vendor.fail_next(1, calls=["submit"], error=VendorError("simulated: 400 bad task"))
    with pytest.raises(VendorError, match="400 bad task"):
        labeling.submit(lake, "brakes", vendor, retry=retry)
    assert sleeps == []


def test_usage_errors(lake, vendor):
    with pytest.raises(InputError, match="batch size"):
        labeling.submit(lake, "brakes", vendor, batch_size=0)
    with pytest.raises(InputError, match="no selection 'missing'"):
        labeling.submit(lake, "missing", vendor)


def test_public_surface():
    assert sorted(labeling.__all__) == [
        "BatchResult",
        "Declined",
        "Retry",
        "SimulatedVendor",
        "SubmitSummary",
        "SyncSummary",
        "TaskSpec",
        "TaskUpdate",
        "Vendor",
        "approve",
        "batches",
        "decline",
        "overdue",
        "resume",
        "status",
        "submit",
        "sync",
        "sync_all",
        "turnaround",
        "vendor_of",
    ]


def test_a_declined_batch_sends_nothing_and_frees_its_scenes(lake, vendor):
    (waiting,) = labeling.submit(lake, "brakes", vendor, approval_threshold=0.1).pending_approval
    declined = labeling.decline(lake, waiting, "ana", via="test")
    assert (declined.state, declined.changed) == ("rejected", True)
    assert labeling.decline(lake, waiting, "bo").changed is False  # recorded once
    events = (
        lake.connect()
        .execute("SELECT entity_id, attrs FROM events WHERE stage = 'rejected'")
        .fetchall()
    )
    assert events == [(waiting, '{"by": "ana", "via": "test"}')]
    with pytest.raises(InputError, match="was rejected"):
        labeling.approve(lake, waiting, vendor)
    assert vendor_keys(vendor) == []
    again = labeling.submit(lake, "brakes", vendor)  # the scenes are planned anew
    assert again.skipped == 0 and [b.state for b in again.batches] == ["submitted"]
    assert again.batches[0].batch_id == f"{waiting}-r2"
    with pytest.raises(InputError, match="not waiting for approval"):
        labeling.decline(lake, again.batches[0].batch_id)
