"""A Dask cluster, for the stages that can run on one (`--scheduler ADDRESS`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from flywheel.errors import FlywheelError


@contextlib.contextmanager
def client(scheduler: str) -> Iterator[Any]:
    """A `distributed.Client` of the scheduler at `scheduler`, closed on exit; a clear error
    when it cannot be reached."""
    from distributed import Client

    try:
        connected = Client(scheduler, timeout="10s")
    except OSError as exc:
        raise FlywheelError(
            f"cannot reach the Dask scheduler at {scheduler}: {exc}; check the address "
            "and that `dask scheduler` is running"
        ) from exc
    try:
        yield connected
    finally:
        connected.close()
