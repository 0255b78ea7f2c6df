import datetime as dt
import statistics

import pytest

from flywheel.errors import TransientError, VendorError
from labeling import SimulatedVendor, TaskSpec

from .conftest import START


def test_turnaround_is_lognormal_around_the_configured_median(tmp_path, clock):
    vendor = SimulatedVendor(tmp_path, now=clock, turnaround_median=dt.timedelta(hours=3))
    took = [
        vendor.turnaround({"data": {"batch_id": "b", "scene_id": f"s{i}"}}).total_seconds()
        for i in range(2000)
    ]
    assert statistics.median(took) == pytest.approx(3 * 3600, rel=0.1)
    assert max(took) > 4 * statistics.median(took)  # a long tail, as real queues have
    again = SimulatedVendor(tmp_path, now=clock, turnaround_median=dt.timedelta(hours=3))
    assert (
        again.turnaround({"data": {"batch_id": "b", "scene_id": "s0"}}).total_seconds() == took[0]
    )


def test_find_changes_and_chunk_limit(tmp_path, clock):
    vendor = SimulatedVendor(tmp_path, now=clock, chunk_size=2)
    assert vendor.ensure_project() == vendor.ensure_project() == "1"
    ids = vendor.submit([TaskSpec("b", "s1", {"tags": []}), TaskSpec("b", "s2", {"tags": []})])
    assert ids == ["1", "2"]
    assert vendor.find(["b/s1", "b/s3"]) == {"b/s1": "1"}
    with pytest.raises(VendorError, match="limit is 2"):
        vendor.submit([TaskSpec("b", f"x{i}", {}) for i in range(3)])
    updates, cursor = vendor.changes(None)
    assert [(u.scene_id, u.status, u.created_at) for u in updates] == [
        ("s1", "submitted", START),
        ("s2", "submitted", START),
    ]
    clock.advance(days=5)
    updates, _ = vendor.changes(cursor)
    assert {u.status for u in updates} == {"labeled"}
    assert all(u.completed_at > u.created_at and u.annotator for u in updates)
    assert vendor.changes(vendor.now().isoformat())[0] == []


def test_injected_failures(tmp_path, clock):
    vendor = SimulatedVendor(tmp_path, now=clock)
    vendor.fail_next(1, calls=["find"])
    with pytest.raises(TransientError, match="503"):
        vendor.find(["b/s1"])
    assert vendor.find(["b/s1"]) == {}
    vendor.fail_after_accept()
    with pytest.raises(TransientError, match="accepted"):
        vendor.submit([TaskSpec("b", "s1", {})])
    assert vendor.find(["b/s1"]) == {"b/s1": "1"}
    assert "simulated" in repr(vendor)
