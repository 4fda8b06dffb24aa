"""The ``warmer`` command line: the root command, its options, and every subcommand registered.

Exit codes: 0 done (``exists``: the blob exists); 1 the blob does not exist or was not found;
2 the command could not run (bad input, bad configuration, an unreachable store or Redis).
Results go to stdout (with ``--json`` the last line is one JSON object); progress, warnings and
errors go to stderr.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from typer.core import TyperGroup, TyperOption

from worker import __version__
from worker.celeryapp import check_schedules
from worker.cli import blobs, deadletter, fsck, images, jobs, run, stats
from worker.cli.console import fail, out
from worker.config.logformat import configure_logging
from worker.config.settings import parse_settings, warn_unknown_variables
from worker.errors import WarmerError

__all__ = ["app", "main"]


class _PlainFlags(TyperGroup):
    """The root command. Typer's help shows a type beside every option: ``<bool>`` beside a
    flag (``--help`` too), ``<int>`` beside a count (``-v``), values neither takes. This group
    blanks them in its own help and in every subcommand's, as each is looked up.

    (The types of typer's own click, ``typer._click``, are private: ``Any`` here.)
    """

    def get_params(self, ctx: Any) -> Any:
        params = super().get_params(ctx)
        _plain(params)
        return params

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _plain_tree(command, ctx)
        return command


def _plain_tree(command: Any, ctx: Any) -> None:
    _plain(command.get_params(ctx))  # --help included: created here, with the same names
    if isinstance(command, TyperGroup):
        for subcommand in command.commands.values():
            _plain_tree(subcommand, ctx)


def _plain(params: list[Any]) -> None:
    for param in params:
        flag = isinstance(param, TyperOption) and (param.is_flag or param.count)
        if flag and param.metavar is None:
            param.metavar = ""


def _print_version(value: bool) -> None:
    if value:
        out.print(__version__)
        raise typer.Exit()


app = typer.Typer(
    cls=_PlainFlags,
    name="warmer",
    help="Keeps a Docker/OCI registry's Redis blob-descriptor cache warm.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
#: The commands that run until stopped: they log at INFO unless told otherwise.
_SERVICES = frozenset({"webhook", "worker", "beat", "up", "flower", "demo"})


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More logs (-vv: debug).")
    ] = 0,
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    configure_logging("WARNING")  # until the settings say how
    try:
        ctx.obj = settings = parse_settings()  # warned about below, in the format set
        configure_logging(
            _level(settings.log_level, ctx.invoked_subcommand, verbose), settings.log_format
        )
        warn_unknown_variables(os.environ)
        check_schedules(settings)  # beat's crontab ranges, before any process starts
    except WarmerError as exc:
        fail(str(exc))


def _level(told: str | None, command: str | None, verbose: int) -> str:
    # WARMER_LOG_LEVEL, else what the command is: a service logs its life (INFO), a one-off
    # command only what went wrong (WARNING); -v and -vv say more than either.
    base = told or ("INFO" if command in _SERVICES else "WARNING")
    levels = ("DEBUG", "INFO", "WARNING", "ERROR")
    return levels[max(0, levels.index(base) - verbose)]


app.command()(blobs.exists)
app.command()(blobs.fetch)
app.command("rewarm")(jobs.rewarm)
app.command("reconcile")(jobs.reconcile)
app.command("fsck")(fsck.fsck)
app.command("check")(images.check)
app.command("warm")(images.warm)
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
