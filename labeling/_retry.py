"""Retries for vendor calls: only `TransientError`, exponential backoff with full jitter."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from flywheel.errors import TransientError, VendorError

T = TypeVar("T")


@dataclass
class Retry:
    """How to retry a vendor call: ``Retry(attempts=5, base_s=0.5, max_s=30)``.

    Delay before retry i (from 0) is ``uniform(0.5, 1) * min(max_s, base_s * 2**i)``, or the
    vendor's ``retry_after`` when it asked for longer. `sleep` and `jitter` are injectable.
    """

    attempts: int = 5
    base_s: float = 0.5
    max_s: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = field(default=random.random)

    def delay(self, attempt: int, error: TransientError) -> float:
        backoff = min(self.max_s, self.base_s * 2**attempt) * (0.5 + 0.5 * self.jitter())
        asked = getattr(error, "retry_after", None)
        return max(backoff, float(asked)) if asked else backoff

    def call(self, fn: Callable[[], T], what: str, location: str, hint: str = "") -> T:
        """`fn()`, retried on TransientError; VendorError naming `location` when out of tries."""
        for attempt in range(self.attempts):
            try:
                return fn()
            except TransientError as error:
                if attempt + 1 >= self.attempts:
                    raise exhausted(what, location, self.attempts, error, hint) from error
                self.sleep(self.delay(attempt, error))
        raise AssertionError("unreachable")


def exhausted(
    what: str, location: str, attempts: int, error: Exception, hint: str = ""
) -> VendorError:
    message = f"{what} failed at {location} after {attempts} attempts: {error}"
    return VendorError(message + (f"; {hint}" if hint else ""), vendor=location)
