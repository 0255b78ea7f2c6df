"""The one printer: rich on a terminal, plain lines otherwise; every value escaped and redacted.

Results go to stdout and progress to stderr, so `flywheel … --format json | jq` works.

Everything printed is data, never markup: a file name holding ``[bold]`` prints as typed, a
value holding ``[/]`` cannot crash the printer, and a newline, escape sequence or other
control character in a name prints as ``\\n``, ``\\x1b`` (it cannot forge a line or recolour
the terminal). Credentials are masked (`flywheel.redact.redact`). Style is asked for apart
from the text, never written into it:

>>> line("saved ", ("[bold]x[/]\\nok", "bold"), " as a selection")
saved [bold]x[/]\\nok as a selection
>>> import contextlib
>>> with contextlib.redirect_stderr(sys.stdout):  # errors go to stderr; shown here
...     error("GET https://ann:hunter2@ls.example/api answered 500")
error: GET https://***@ls.example/api answered 500

Code that prints goes through `line`, `warn`, `error`, `table`, `frame`, `print_json` or
`progress`; a ``print``, ``click.echo`` or ``rich`` call elsewhere is the bug.
"""

from __future__ import annotations

import json
import logging
import sys
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

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
from rich.text import Text

from flywheel.redact import redact, redact_data

# A piece of a line: plain text, or (text, rich style) to style it. Text is never markup.
Part = str | tuple[str, str]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def clean(value: object) -> str:
    """`value` as one safe line: secrets masked, control characters escaped.

    >>> clean("a\\nb\\x1b[2J\\u202ec")
    'a\\\\nb\\\\x1b[2J\\\\u202ec'
    """
    text = redact(value if isinstance(value, str) else str(value))
    if text.isprintable():  # the common case: nothing to escape
        return text
    return "".join(_escape(ch) for ch in text)


def _escape(ch: str) -> str:
    # not printable: controls (C0, C1, escape), line and paragraph separators, format
    # characters (bidi overrides that reorder what a name shows), unassigned code points
    if ch in _NAMED:
        return _NAMED[ch]
    if ch.isprintable() or unicodedata.category(ch) == "Zs":  # spaces (no-break, thin) are fine
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def text(*parts: Part, style: str | None = None) -> Text:
    """The parts as one rich Text: each cleaned, tuples styled; nothing is read as markup.

    >>> text("a ", ("[b]", "bold")).plain
    'a [b]'
    """
    out = Text(style=style or "")
    for part in parts:
        if isinstance(part, tuple):
            out.append(clean(part[0]), style=part[1])
        else:
            out.append(clean(part))
    return out


def _console(file: TextIO, **options: Any) -> Console:
    # a new Console per call follows sys.stdout/sys.stderr as redirected (tests, pipes)
    return Console(file=file, markup=False, emoji=False, highlight=False, **options)


def line(*parts: Part, style: str | None = None) -> None:
    """Print one line of results on stdout (see `text` for the parts)."""
    _console(sys.stdout, soft_wrap=True).print(text(*parts, style=style))


def warn(*parts: Part, style: str | None = None) -> None:
    """Print one line of progress, warning or log on stderr (see `text` for the parts)."""
    _console(sys.stderr, soft_wrap=True).print(text(*parts, style=style))


def error(message: object) -> None:
    """``error: <message>`` on stderr, the way every command reports an expected failure."""
    warn(("error:", "red"), " ", str(message))


class LogHandler(logging.Handler):
    """A logging handler that prints each record through `warn`: log lines are escaped and
    redacted like everything else (a request path or a vendor's error text is data too).

    >>> import contextlib
    >>> log = logging.getLogger("flywheel.example")
    >>> log.addHandler(LogHandler())
    >>> with contextlib.redirect_stderr(sys.stdout):  # warnings go to stderr; shown here
    ...     log.warning("GET https://ann:hunter2@ls.example/[bold] failed")
    GET https://***@ls.example/[bold] failed
    >>> log.handlers.clear()
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            warn(self.format(record))
        except Exception:  # a log line must never take the program down
            self.handleError(record)


def table(rows: Iterable[Sequence[Any]], columns: Sequence[str], title: str | None = None) -> None:
    """Print rows as a table: boxed on a terminal, space-aligned plain text otherwise."""
    console = _console(sys.stdout)
    styled = console.is_terminal
    if not styled:  # plain lines for pipes and logs: never wrap a row
        console = _console(sys.stdout, width=100_000)
    view = Table(
        title=text(title) if styled and title else None,
        box=None if not styled else Table().box,
    )
    for column in columns:
        view.add_column(text(column), overflow="fold")
    for row in rows:
        view.add_row(*(text(_cell(v)) for v in row))
    if title and not styled:
        console.print(text(title))
    console.print(view)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if hasattr(value, "hour"):  # datetime, pandas Timestamp
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if hasattr(value, "strftime"):  # a date: a license's last day
        return value.strftime("%Y-%m-%d")
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
    """Print `data` as JSON on stdout; every string in it redacted (JSON escapes the rest)."""
    data = redact_data(json.loads(json.dumps(data, default=str)))
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


@contextmanager
def progress(total: int, description: str) -> Iterator[Any]:
    """A progress bar on stderr when it is a terminal; else a plain line per advance."""
    console = _console(sys.stderr)
    if console.is_terminal:
        columns = [
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task(clean(description), total=total)
            yield lambda advance=1, note=None: bar.update(task, advance=advance)
    else:
        done = 0

        def advance(amount: int = 1, note: str | None = None) -> None:
            nonlocal done
            done += amount
            if note:
                warn(f"{description}: {note}")

        yield advance


def frame(
    data: Any, fmt: str, columns: Sequence[str] | None = None, title: str | None = None
) -> None:
    """Print a pandas DataFrame: a table (only `columns`, if given), JSON records, or CSV."""
    if fmt == "json":
        print_json(json.loads(data.to_json(orient="records", date_format="iso")))
        return
    if fmt == "csv":
        # for programs: CSV quoting keeps newlines inside a field; secrets are still masked
        flat = data.apply(lambda col: col.map(_csv_value))
        flat.to_csv(sys.stdout, index=False)
        return
    shown = [c for c in (columns or data.columns) if c in data.columns]
    table(data[shown].itertuples(index=False, name=None), shown, title=title)


def _csv_value(value: Any) -> Any:
    if _is_list(value):
        return redact(";".join(map(str, value)))
    return redact(value) if isinstance(value, str) else value


def _is_list(value: Any) -> bool:
    return isinstance(value, list | tuple) or type(value).__name__ == "ndarray"


__all__ = [
    "LogHandler",
    "Part",
    "clean",
    "error",
    "frame",
    "line",
    "print_json",
    "progress",
    "table",
    "text",
    "warn",
]
