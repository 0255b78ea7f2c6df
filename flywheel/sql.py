"""Quoting for SQL that Flywheel builds: the one place a name or a value becomes SQL text.

Every identifier (a table, a column, a view) goes through `identifier`, every string value
through `literal`, every file path DuckDB opens through `path`: a name that came from a folder,
a file or a user is data, never code, and a path is one file, never a glob.

>>> identifier('scenes"; DROP TABLE logs; --')
'"scenes""; DROP TABLE logs; --"'
>>> literal("it's")
"'it''s'"
>>> path("/data/runs/lake[1]/logs/a*.parquet")
"'/data/runs/lake[[]1]/logs/a[*].parquet'"
"""

from __future__ import annotations

# What DuckDB (and fsspec, for object stores) expand in a path given to read_parquet and the
# like, even inside a list of files: `*`, `?` and `[...]`. Braces are not special to either.
GLOB_CHARACTERS = "*?["


def identifier(name: str) -> str:
    """`name` as a quoted DuckDB identifier (double quotes doubled)."""
    if "\x00" in name:
        raise ValueError("an identifier cannot hold a NUL character")
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """`text` as a DuckDB string literal (single quotes doubled)."""
    if "\x00" in text:
        raise ValueError("a string literal cannot hold a NUL character")
    return "'" + text.replace("'", "''") + "'"


def glob_escape(text: str) -> str:
    """`text` as a glob pattern that matches exactly that path: each glob character becomes a
    one-character class (``*`` -> ``[*]``, ``[`` -> ``[[]``), which DuckDB's and fsspec's globs
    both read literally.

    >>> glob_escape("runs/lake[1]/x?.parquet")
    'runs/lake[[]1]/x[?].parquet'
    """
    return "".join(f"[{ch}]" if ch in GLOB_CHARACTERS else ch for ch in text)


def path(text: str) -> str:
    """`text`, a file path or URL, as the DuckDB string literal that opens exactly that file."""
    return literal(glob_escape(text))


__all__ = ["GLOB_CHARACTERS", "glob_escape", "identifier", "literal", "path"]
