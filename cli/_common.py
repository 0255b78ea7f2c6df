"""What every command shares: the --lake and --format options, expected failures as one line
and an exit code, Ctrl-C as exit 130, and the printing of an ingest summary (ingest and demo).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from flywheel import console
from flywheel.errors import FlywheelError

FORMATS = ("table", "json")


def lake_option(command: Callable) -> Callable:
    return click.option(
        "--lake",
        type=click.Path(file_okay=False),
        default=None,
        help="Lake folder. Default: $FLYWHEEL_LAKE, else `lake` in flywheel.toml, else ./lake.",
    )(command)


def format_option(command: Callable) -> Callable:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="table for people, json for programs.",
    )(command)


def expected_errors(command: Callable) -> Callable:
    """Turn expected failures into one clear line on stderr and the right exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except FlywheelError as exc:  # ConfigError and UsageError exit 2, the rest 1
            console.error(exc)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            interrupted()
        except RuntimeError as exc:  # DuckDB reports a Ctrl-C it caught mid-query this way
            if not is_interrupt(exc):
                raise
            interrupted()

    return wrapper


INTERRUPTED = 130  # 128 + SIGINT, what shells report for a Ctrl-C


def interrupted() -> None:
    """Ctrl-C: one line on stderr, exit 130. Writes are atomic, so the lake is as it was
    before the step that was cut short."""
    console.warn("interrupted")
    sys.exit(INTERRUPTED)


def is_interrupt(exc: BaseException) -> bool:
    """Whether `exc` is DuckDB's word for a Ctrl-C (flywheel.query, imported only then)."""
    from flywheel import query

    return query.is_interrupt(exc)


def print_ingest_summary(summary) -> None:
    names = short_names([r.source_uri for r in summary.results])
    rows = [
        (
            names[r.source_uri],
            r.status,
            r.log_id,
            r.message_count
            if r.complete or r.expected_messages is None
            else f"{r.message_count:,} of {r.expected_messages:,}",
            r.n_scenes,
            r.reason or "; ".join(r.notes[:1]) or "",
        )
        for r in summary.results
    ]
    console.table(rows, ["file", "status", "log_id", "messages", "scenes", "note"])
    totals = summary.as_dict()
    mb = totals["bytes"] / 1e6
    console.line(
        f"{totals['files']} files, {totals['ingested']} ingested, {totals['skipped']} already "
        f"in the lake, {totals['salvaged']} salvaged, {totals['quarantined']} quarantined; "
        f"{totals['messages']:,} messages, {totals['scenes']:,} scenes, {mb:.1f} MB "
        f"in {totals['seconds']:.1f} s" + f"; source {summary.source}"
    )
    for warning in summary.warnings:
        console.warn(("source:", "yellow"), f" {warning}")
    # which topic went into which table, once per distinct mapping (a fleet shares one)
    mappings: dict[str, int] = {}
    for r in summary.results:
        if r.tables:
            pairs = sorted(r.tables.items(), key=lambda item: (item[1], item[0]))
            key = ", ".join(f"{topic} -> {table}" for topic, table in pairs)
            mappings[key] = mappings.get(key, 0) + 1
    for key, n in mappings.items():
        console.line(f"topics into tables: {key}" + (f" ({n} files)" if n > 1 else ""))
    refused: dict[str, int] = {}  # --topic-map entries refused, unmatched or unusable
    for r in summary.results:
        for note in r.notes:
            if "--topic-map" in note:
                refused[note] = refused.get(note, 0) + 1
    for note, n in refused.items():
        console.warn(("topic map:", "yellow"), f" {note}" + (f" ({n} files)" if n > 1 else ""))
    rejected = [r for r in summary.results if r.rejected]
    for r in rejected:
        console.warn((f"{r.status}:", "yellow"), f" {r.source_uri}: {r.reason}")


def short_names(uris: list[str]) -> dict[str, str]:
    """Each source as a path relative to what all of them share (names alone can repeat)."""
    import os
    from urllib.parse import unquote, urlparse

    paths = {uri: unquote(urlparse(uri).path) for uri in uris}
    if len(paths) < 2:
        return {uri: Path(path).name for uri, path in paths.items()}
    common = os.path.commonpath([str(Path(p).parent) for p in paths.values()])
    return {uri: os.path.relpath(path, common) for uri, path in paths.items()}
