"""The vendor interface: what every labeling vendor adapter implements (docs/contract.md §6).

Small on purpose, so adding Scale, Labelbox or CVAT is one module. It follows the shape of
Label Studio's REST API, the first real adapter:

===================  ===================================  =====================================
method               what it does                         Label Studio
===================  ===================================  =====================================
``ensure_project``   create the project on first use      POST /api/projects
``submit``           create tasks in bulk, return ids     POST /api/projects/ID/import
                                                          ?return_task_ids=true
``find``             look tasks up by idempotency key     GET /api/tasks filtered on
                                                          data.scene_id (+ data.batch_id)
``changes``          what changed since a cursor          GET /api/tasks filtered on updated_at
                                                          (+ annotations; a full read of a
                                                          mostly labeled project: one export
                                                          snapshot)
===================  ===================================  =====================================

The idempotency key of a task is ``"<batch_id>/<scene_id>"``; adapters store both ids in the
task's data so `find` can answer after a crash (vendors such as Label Studio do not
deduplicate imports). Errors: `TransientError` for what is worth retrying (timeouts, 429, 5xx;
``retry_after`` in seconds when the vendor said so), `VendorError` otherwise. Messages name
the vendor (its URL) and never a credential.

>>> key("demo-3f2a", "a1b2-00003")
'demo-3f2a/a1b2-00003'
>>> split_key("demo-3f2a/a1b2-00003")
('demo-3f2a', 'a1b2-00003')
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

# A sync cursor: opaque to callers, JSON-serialisable (stored in the lake as is), read back only
# by the vendor that returned it. The simulated vendor uses an ISO time; Label Studio a dict.
Cursor: TypeAlias = str | dict[str, Any]

# task statuses the scheduler and `tasks` table use, whatever the vendor calls them
SUBMITTED = "submitted"
LABELED = "labeled"


def key(batch_id: str, scene_id: str) -> str:
    """The idempotency key a vendor stores with a task."""
    return f"{batch_id}/{scene_id}"


def split_key(task_key: str) -> tuple[str, str]:
    """(batch_id, scene_id) of a key made by `key`."""
    batch_id, _, scene_id = task_key.partition("/")
    return batch_id, scene_id


@dataclass(frozen=True)
class TaskSpec:
    """One task to create: a scene of a batch, with the data the annotator sees.

    `data` must hold at least ``scene_id`` and ``batch_id`` (the key, stored at the vendor).
    """

    batch_id: str
    scene_id: str
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return key(self.batch_id, self.scene_id)


@dataclass(frozen=True)
class TaskUpdate:
    """A task's state at the vendor, as `Vendor.changes` reports it (vendor's own times)."""

    external_id: str
    key: str
    status: str  # SUBMITTED or LABELED
    created_at: dt.datetime  # when the vendor created the task
    completed_at: dt.datetime | None = None  # when the vendor completed it
    annotator: str | None = None
    result: Any = None  # the vendor's annotation, JSON-serialisable

    @property
    def batch_id(self) -> str:
        return split_key(self.key)[0]

    @property
    def scene_id(self) -> str:
        return split_key(self.key)[1]


class Vendor(abc.ABC):
    """A labeling vendor. Subclasses set `name`, `price_per_task` (USD), `sla`, `chunk_size`."""

    name: str = "vendor"
    price_per_task: float = 0.0
    sla: dt.timedelta = dt.timedelta(days=1)
    chunk_size: int = 1000  # tasks per `submit` call; the scheduler chunks to this size

    def __repr__(self) -> str:  # never shows credentials
        return f"{type(self).__name__}(name={self.name!r})"

    @property
    def location(self) -> str:
        """Where the vendor is, for messages (a URL; never a key)."""
        return self.name

    @abc.abstractmethod
    def ensure_project(self) -> str:
        """Create the project on first use; return its id. Safe to call any number of times."""

    @abc.abstractmethod
    def submit(self, tasks: Sequence[TaskSpec]) -> list[str]:
        """Create `tasks` (at most `chunk_size`) in one call; their external ids, in order.

        May raise after the vendor accepted the tasks (a timeout): callers reconcile with
        `find` before retrying, never by submitting again blindly.
        """

    @abc.abstractmethod
    def find(self, keys: Sequence[str]) -> dict[str, str]:
        """External ids of the tasks stored under `keys` (absent keys are left out)."""

    @abc.abstractmethod
    def changes(self, since: Cursor | None) -> tuple[list[TaskUpdate], Cursor | None]:
        """Tasks created or changed since cursor `since` (None: all), and the next cursor.

        Reporting a task twice is allowed (sync is idempotent); missing one is not. A vendor
        must accept every cursor it ever returned, older formats included (they stay in lakes).
        """
