"""Output for people and for pipes: rich on a terminal, plain lines otherwise.

Results go to stdout and progress to stderr, so `flywheel … --format json | jq` works.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table


def table(rows: Iterable[Sequence[Any]], columns: Sequence[str], title: str | None = None) -> None:
    """Print rows as a table: boxed on a terminal, space-aligned plain text otherwise."""
    console = Console(file=sys.stdout, highlight=False)  # follows redirection in tests
    styled = console.is_terminal
    if not styled:  # plain lines for pipes and logs: never wrap a row
        console = Console(file=sys.stdout, highlight=False, width=100_000)
    view = Table(title=title if styled else None, box=None if not styled else Table().box)
    for column in columns:
        view.add_column(column, overflow="fold")
    for row in rows:
        view.add_row(*(_cell(v) for v in row))
    if title and not styled:
        console.print(title)
    console.print(view)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if hasattr(value, "strftime"):  # datetime, pandas Timestamp
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float) and value != value:  # NaN: nothing measured yet
        return "-"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list | tuple) or type(value).__name__ == "ndarray":
        return ", ".join(str(v) for v in value)
    return str(value)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def line(text: str) -> None:
    Console(file=sys.stdout, highlight=False, soft_wrap=True).print(text)


def warn(text: str) -> None:
    Console(file=sys.stderr, highlight=False, soft_wrap=True).print(text)


@contextmanager
def progress(total: int, description: str) -> Iterator[Any]:
    """A progress bar on stderr when it is a terminal; else a plain line per advance."""
    console = Console(file=sys.stderr)
    if console.is_terminal:
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task(description, total=total)
            yield lambda advance=1, note=None: bar.update(task, advance=advance)
    else:
        done = 0

        def advance(amount: int = 1, note: str | None = None) -> None:
            nonlocal done
            done += amount
            if note:
                print(f"{description}: {note}", file=sys.stderr, flush=True)

        yield advance


def frame(
    data: Any, fmt: str, columns: Sequence[str] | None = None, title: str | None = None
) -> None:
    """Print a pandas DataFrame: a table (only `columns`, if given), JSON records, or CSV."""
    if fmt == "json":
        print_json(json.loads(data.to_json(orient="records", date_format="iso")))
        return
    if fmt == "csv":
        flat = data.apply(
            lambda col: col.map(lambda v: ";".join(map(str, v)) if _is_list(v) else v)
        )
        flat.to_csv(sys.stdout, index=False)
        return
    shown = [c for c in (columns or data.columns) if c in data.columns]
    table(data[shown].itertuples(index=False, name=None), shown, title=title)


def _is_list(value: Any) -> bool:
    return isinstance(value, list | tuple) or type(value).__name__ == "ndarray"
