"""The one rule for names Flywheel gives: selections now; datasets, sources and triggers later.

A name is a letter or digit, then letters, digits, ``.``, ``_`` or ``-``, up to `MAX_LENGTH`
characters, matched in full (a trailing newline is not a name). Names become file names
(``selections/<name>.parquet``), event file names and terminal output, so nothing else may pass:
no path separator, no space, no markup, no control character.

>>> check_name("hard-brakes-v1")
'hard-brakes-v1'
>>> is_name("hard-brakes\\n"), is_name("../x"), is_name("[bold]x")
(False, False, False)
"""

from __future__ import annotations

import hashlib
import re

from flywheel.errors import InputError

MAX_LENGTH = 100
PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_NAME = re.compile(PATTERN)


def is_name(name: object) -> bool:
    """Whether `name` is a usable name (see the module docstring)."""
    return isinstance(name, str) and len(name) <= MAX_LENGTH and _NAME.fullmatch(name) is not None


def check_name(name: object, kind: str = "name") -> str:
    """`name` when it is usable, else InputError saying what a `kind` name may hold.

    >>> check_name("x y", "selection")
    Traceback (most recent call last):
    ...
    flywheel.errors.InputError: selection name 'x y' is not usable: use letters, digits, '.', '_' or '-' (up to 100 characters, starting with a letter or digit), e.g. 'hard-brakes-v1'
    """  # noqa: E501
    if not is_name(name):
        shown = repr(name)
        shown = shown if len(shown) <= 2 * MAX_LENGTH else shown[: 2 * MAX_LENGTH] + "…"
        raise InputError(
            f"{kind} name {shown} is not usable: use letters, digits, '.', '_' or '-' "
            f"(up to {MAX_LENGTH} characters, starting with a letter or digit), "
            "e.g. 'hard-brakes-v1'",
            name=name,
            kind=kind,
        )
    return name  # type: ignore[return-value]


def file_stem(text: str) -> str:
    """A file name for any text (an id a vendor or a user chose): readable, safe, and distinct
    for texts that differ only in characters a file name cannot hold.

    >>> file_stem("det v7/a")
    'det_v7_a-65498959'
    """
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:80] + "-" + digest


__all__ = ["MAX_LENGTH", "PATTERN", "check_name", "file_stem", "is_name"]
