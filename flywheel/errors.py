"""Exceptions raised by Flywheel.

The hierarchy::

    FlywheelError            base: every expected failure, with a message a person can act on
    ├── ConfigError          a setting is missing or malformed (says where it looked)
    ├── InputError           an input file or argument cannot be used (names the file, the fix)
    │   ├── QueryError       a mining query or `where` expression is refused
    │   └── UsageError       an argument cannot work at all (a missing folder, a bad --out)
    ├── LakeError            the lake is unreadable, locked, or inconsistent
    └── VendorError          a labeling vendor failed (names the URL, never the key)
        └── TransientError   worth retrying (timeouts, 429, 5xx); retry loops catch only these

Every exception keeps its data as attributes and survives pickling, because Dask moves
exceptions between processes. `exit_code` is what the command line exits with (docs/contract.md §4:
1 for a failure, 2 for a usage error). The message, and every text attribute, passes through
`flywheel.redact.redact` when the exception is made, so no credential reaches ``str``,
``repr``, a log or a pickle, whatever a vendor echoed into it.

>>> error = VendorError("GET https://ann:hunter2@ls.example/api failed", vendor="https://ann:x@h")
>>> str(error), error.vendor
('GET https://***@ls.example/api failed', 'https://***@h')
"""

from __future__ import annotations

from flywheel.redact import redact


class FlywheelError(Exception):
    """Base class of every expected Flywheel failure."""

    exit_code = 1

    def __init__(self, message: str, **attrs: object) -> None:
        message = redact(message)
        attrs = {k: redact(v) if isinstance(v, str) else v for k, v in attrs.items()}
        super().__init__(message)
        self.message = message
        self.attrs = attrs
        for key, value in attrs.items():
            setattr(self, key, value)

    def __reduce__(self):  # keep attributes across pickling (Dask workers -> client)
        return (_rebuild, (type(self), self.message, self.attrs))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[FlywheelError], message: str, attrs: dict) -> FlywheelError:
    return cls(message, **attrs)


class ConfigError(FlywheelError):
    """A setting is missing or malformed."""

    exit_code = 2


class InputError(FlywheelError):
    """An input (file, argument, query) cannot be used as given."""


class QueryError(InputError):
    """A mining query or `where` expression is refused."""


class UsageError(InputError):
    """An argument that cannot work as given (a missing folder, an --out that is a device)."""

    exit_code = 2


class LakeError(FlywheelError):
    """The lake cannot be read or written as expected."""


class VendorError(FlywheelError):
    """A labeling vendor failed."""


class TransientError(VendorError):
    """A failure worth retrying: timeout, 429, 5xx."""


__all__ = [
    "ConfigError",
    "FlywheelError",
    "InputError",
    "LakeError",
    "QueryError",
    "TransientError",
    "UsageError",
    "VendorError",
]
