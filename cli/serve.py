"""`flywheel serve`: the report, galleries and the decisions waiting, in a browser."""

from __future__ import annotations

import os

import click

from cli._common import expected_errors, lake_option
from flywheel import console
from flywheel.config import load_config

TOKEN_ENV = "FLYWHEEL_SERVE_TOKEN"


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0: any."
)
@lake_option
@expected_errors
def serve_command(host, port, lake) -> None:
    """Serve the lake to a browser: the live report, galleries of the scenes behind each
    alert, selection and batch, and buttons to approve or reject a batch waiting for approval
    and to acknowledge an alert.

    Every action needs $FLYWHEEL_SERVE_TOKEN (the page asks for it once). Without a token,
    actions are off and only a loopback --host is allowed. Serves until Ctrl-C.

    Example: FLYWHEEL_SERVE_TOKEN=… flywheel serve --port 8765
    """
    from flywheel.lake import resolve
    from serve import run

    config = load_config({"lake": lake})
    token = os.environ.get(TOKEN_ENV, "").strip() or None
    run(
        resolve(config.lake),
        host,
        port,
        token,
        config,
        on_ready=lambda url: console.line(
            f"serving {config.lake} on {url}"
            + ("" if token else f" (actions off: no ${TOKEN_ENV})")
            + "; Ctrl-C to stop"
        ),
    )
