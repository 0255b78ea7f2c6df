"""The touchpoints where a person decides: approve or reject a batch, acknowledge an alert.

Each action is `(status, JSON body)` and idempotent: a repeat answers 200 with the same body,
sends nothing again and records no second event. Each one that changes something appends one
`events` row: ``entity_id`` the batch or alert id, stage ``approved`` | ``rejected`` |
``acknowledged``, attrs ``{"by": WHO, "via": "serve"}``.

- approve: exactly `flywheel label approve` (``labeling.approve`` with the batch's vendor
  looked up); the ``approved`` event is recorded under a fixed name before the batch moves,
  so a retry after a crash or a vendor failure replaces it rather than adding another.
- reject: ``labeling.decline`` (a pending_approval batch becomes ``rejected``, nothing sent).
- acknowledge: ``metrics.acknowledge``.
"""

from __future__ import annotations

from typing import Any

import labeling
import metrics
from flywheel import events
from flywheel.config import Config
from flywheel.errors import FlywheelError, InputError, VendorError
from flywheel.lake import Lake
from flywheel.names import is_name

VIA = "serve"
Answer = tuple[int, dict[str, Any]]


def batch(lake: Lake, batch_id: str) -> dict[str, Any] | None:
    """The batch as the API shows it (None when there is none of that id)."""
    if not is_name(batch_id) or not lake.exists("batches", batch_id):
        return None
    try:
        row = labeling.status(lake, batch_id).iloc[0]
    except InputError:
        return None
    return {
        "batch_id": str(row["batch_id"]),
        "vendor": str(row["vendor"]),
        "selection": None if row["selection"] is None else str(row["selection"]),
        "state": str(row["state"]),
        "tasks": int(row["tasks"]),
        "cost": float(row["cost"]),
    }


def _missing(batch_id: str) -> Answer:
    return 404, {"error": f"no batch {batch_id!r}", "batch_id": batch_id}


def approve(lake: Lake, batch_id: str, by: str, config: Config) -> Answer:
    """Approve a pending_approval batch and submit it (once, however often it is clicked)."""
    with lake.lock("serve-actions"):
        found = batch(lake, batch_id)
        if found is None:
            return _missing(batch_id)
        if found["state"] == "rejected":
            return 409, {"error": f"batch {batch_id} was rejected", **found}
        if found["state"] == "pending_approval":
            events.record(
                lake,
                [batch_id],
                "approved",
                attrs={"by": by, "via": VIA},
                name=f"serve-approved-{batch_id}",  # a retry replaces it: one event per batch
            )
        try:  # the same call as `flywheel label approve`
            labeling.approve(lake, batch_id, settings=config.labeling)
        except VendorError as exc:
            return 502, {"error": str(exc), **(batch(lake, batch_id) or found)}
        except FlywheelError as exc:
            return 409, {"error": str(exc), **(batch(lake, batch_id) or found)}
        return 200, batch(lake, batch_id) or found


def reject(lake: Lake, batch_id: str, by: str) -> Answer:
    """Set a pending_approval batch `rejected`: nothing is sent."""
    with lake.lock("serve-actions"):
        found = batch(lake, batch_id)
        if found is None:
            return _missing(batch_id)
        try:
            labeling.decline(lake, batch_id, by, via=VIA)
        except FlywheelError as exc:
            return 409, {"error": str(exc), **found}
        return 200, batch(lake, batch_id) or found


def acknowledge(lake: Lake, alert_id: str, by: str, config: Config) -> Answer:
    """Acknowledge an active alert until the entities behind it change."""
    with lake.lock("serve-actions"):
        try:
            entry, _ = metrics.acknowledge(lake, alert_id, by, via=VIA, config=config.metrics)
        except InputError as exc:
            if getattr(exc, "not_found", False):
                return 404, {"error": str(exc), "id": alert_id}
            return 409, {"error": str(exc), "id": alert_id}
        return 200, entry
