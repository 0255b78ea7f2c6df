"""The `flywheel` command: each subcommand is the Python API with a shell around it.

Exit codes (docs/contract.md §4): 0 success, 1 some input rejected (the rest processed) or an
expected failure, 2 usage error. Stage packages are imported only when their command runs.

Each command group has its module (ingest, mine, trigger, label, metrics, lineage, export,
serve, demo); this one holds the root group and the entry point.
"""

from __future__ import annotations

import sys

import click

from cli import demo, export, ingest, label, lineage, metrics, mine, quality, serve, trigger
from cli._common import interrupted, is_interrupt
from flywheel import console


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flywheel-av")
def cli() -> None:
    """Flywheel: drive logs in, scenes mined, labeled, and the loop measured."""


for command in (
    ingest.generate, ingest.ingest_command, ingest.status, ingest.show_config, demo.demo,
    mine.index_command, mine.mine, trigger.trigger, label.label,
    metrics.track_command, metrics.report_command,
    lineage.source, lineage.dataset, lineage.lineage, export.export, serve.serve_command,
):  # fmt: skip
    cli.add_command(command)
label.label.add_command(quality.label_quality)
label.label.add_command(quality.label_reject)


def main() -> None:
    """The `flywheel` entry point: click's own handling, except that Ctrl-C anywhere (parsing
    arguments, importing a stage, inside a command) exits 130 with one line, no traceback."""
    try:
        code = cli.main(prog_name="flywheel", standalone_mode=False)
    except click.exceptions.Abort as exc:  # click turns KeyboardInterrupt and EOF into Abort
        if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
            interrupted()
        console.warn("aborted")
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        interrupted()
    except RuntimeError as exc:
        if not is_interrupt(exc):
            raise
        interrupted()
    sys.exit(code if isinstance(code, int) else 0)
