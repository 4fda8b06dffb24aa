"""The ``warmer`` command line: the root command, its options, and every subcommand registered.

Exit codes: 0 done (``exists``: the blob exists); 1 the blob does not exist or was not found;
2 the command could not run (bad input, bad configuration, an unreachable store or Redis).
Results go to stdout (with ``--json`` the last line is one JSON object); progress, warnings and
errors go to stderr.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.logging import RichHandler

from worker import __version__
from worker.cli import blobs, deadletter, jobs, run, stats
from worker.cli.console import err, fail, out
from worker.config.settings import load_settings
from worker.errors import WarmerError

__all__ = ["app", "main"]

app = typer.Typer(
    name="warmer",
    help="Keeps a Docker/OCI registry's Redis blob-descriptor cache warm.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs.")] = 0,
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        out.print(__version__)
        raise typer.Exit()
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, show_time=False)],
        force=True,
    )
    try:
        ctx.obj = load_settings()
    except WarmerError as exc:
        fail(str(exc))


app.command()(blobs.exists)
app.command()(blobs.fetch)
app.command("rewarm")(jobs.rewarm)
app.command("reconcile")(jobs.reconcile)
app.command()(run.webhook)
app.command()(run.up)
app.command(context_settings=_PASS_THROUGH)(run.worker)
app.command(context_settings=_PASS_THROUGH)(run.beat)
app.command()(run.demo)
app.command()(run.flower)
app.command("stats")(stats.stats)
app.add_typer(deadletter.deadletter, name="deadletter")


def main() -> None:
    """Entry point of the ``warmer`` console script."""
    app()
