"""Labeling: batches of mined scenes to annotation vendors, labels back.

>>> import labeling
>>> import datetime as dt
>>> vendor = labeling.SimulatedVendor.for_lake(lake)
>>> labeling.submit(lake, "brakes", vendor, batch_size=2).skipped  # 3 were sent before
3
>>> vendor.advance(dt.timedelta(days=3))
>>> labeling.sync(lake, vendor).labeled
3
>>> [s.vendor for s in labeling.sync_all(lake)]  # every vendor with batches
['simulated']
>>> labeling.status(lake)[["state", "tasks", "labeled"]].sum(numeric_only=True).tolist()
[6, 6]
"""

from labeling._retry import Retry
from labeling.schedule import (
    BatchResult,
    Declined,
    SubmitSummary,
    approve,
    batches,
    decline,
    resume,
    submit,
    vendor_of,
)
from labeling.status import overdue, status, turnaround
from labeling.sync import SyncSummary, sync, sync_all
from labeling.vendors.base import TaskSpec, TaskUpdate, Vendor
from labeling.vendors.simulated import SimulatedVendor

__all__ = [
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
