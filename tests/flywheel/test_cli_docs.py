"""docs/cli.md is every command's --help as it is now, and every command has a working --help."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli import cli
from cli.docs import DOCS, contexts, render

PATHS = [ctx.command_path.split()[1:] for ctx in contexts(cli)]


def test_docs_cli_md_is_up_to_date():
    assert DOCS.read_text() == render(), "docs/cli.md is stale: run `make docs`"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "flywheel")
def test_every_command_has_a_help_with_a_description(path):
    result = CliRunner().invoke(cli, [*path, "--help"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    usage, _, rest = result.output.partition("\n\n")
    assert usage.startswith("Usage: ") and usage.split()[2 : 2 + len(path)] == path
    description = rest.split("\n\n")[0].strip()
    assert description and not description.startswith("Options:"), result.output


def test_the_walk_reaches_every_subcommand():
    assert ["label", "sync"] in PATHS and ["mine", "similar"] in PATHS and len(PATHS) > 40
