"""Labeling: batches of mined scenes to annotation vendors, labels back.

>>> import labeling
>>> vendor = labeling.SimulatedVendor.for_lake("lake")            # doctest: +SKIP
>>> labeling.submit("lake", "demo", vendor, batch_size=50)        # doctest: +SKIP
>>> labeling.sync("lake", vendor)                                 # doctest: +SKIP
>>> labeling.sync_all("lake")     # every vendor with batches     # doctest: +SKIP
>>> labeling.status("lake")                                       # doctest: +SKIP
"""

from labeling._retry import Retry
from labeling.schedule import (
    BatchResult,
    SubmitSummary,
    approve,
    batches,
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
    "Retry",
    "SimulatedVendor",
    "SubmitSummary",
    "SyncSummary",
    "TaskSpec",
    "TaskUpdate",
    "Vendor",
    "approve",
    "batches",
    "overdue",
    "resume",
    "status",
    "submit",
    "sync",
    "sync_all",
    "turnaround",
    "vendor_of",
]
