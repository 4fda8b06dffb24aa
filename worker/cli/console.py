"""Plumbing of the command line: results on stdout, everything else on stderr; the settings."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, Final, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from worker.config.settings import Settings

__all__ = [
    "EXIT_ERROR",
    "EXIT_NOT_FOUND",
    "JsonOption",
    "err",
    "fail",
    "out",
    "print_json",
    "progress_bar",
    "settings_of",
]

EXIT_NOT_FOUND: Final = 1
EXIT_ERROR: Final = 2

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on the last line.")]

# No markup: what is printed holds data (a registry snippet's ``[localhost:6379]``, a CA path
# in brackets, an event's reason), which rich would read as tags and drop or choke on. No soft
# wrap at the console's width either: a result line piped to a file or a script stays one line.
out = Console(highlight=False, markup=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)


def fail(message: str) -> NoReturn:
    """Print one error line on stderr and exit with EXIT_ERROR."""
    err.print(Text.assemble(("warmer: error:", "bold red"), " ", message))
    raise typer.Exit(EXIT_ERROR)


def print_json(obj: Any) -> None:
    """One JSON line on stdout: plain, never wrapped or styled, for machines."""
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the ``warmer`` callback read into the context."""
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)  # set by the callback of the root command
    return settings


class _NoProgress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def progress_bar() -> Progress | _NoProgress:
    """A spinner on stderr for a person watching a long job; nothing in a pipe."""
    # A bar only for a person watching: never in a pipe, a log file or CI output.
    if not err.is_terminal:
        return _NoProgress()
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
