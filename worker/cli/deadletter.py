"""``warmer deadletter list|replay|purge``: the events the warmer gave up on."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.table import Table

from worker.celeryapp import create_app
from worker.cli.console import fail, out, print_json, settings_of
from worker.core.clients import build_state
from worker.errors import WarmerError
from worker.state.ledger import replay

__all__ = ["deadletter"]

deadletter = typer.Typer(
    help="Read, replay or purge the events the warmer gave up on.", no_args_is_help=True
)


@deadletter.command("list")
def deadletter_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many, oldest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Show the dead letters: when, why, and the event."""
    try:
        state = build_state(settings_of(ctx))
        letters = state.dead_letters(0, limit - 1)
        total = state.dead_letter_count()
    except WarmerError as exc:
        fail(str(exc))
    if as_json:
        for letter in letters:
            print_json(letter.as_dict())
        return
    table = Table("#", "when (UTC)", "reason", "event", title=f"{total} dead letters")
    for i, letter in enumerate(letters):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(letter.at))
        table.add_row(str(i), when, letter.reason, _short(letter.event))
    out.print(table)


@deadletter.command("replay")
def deadletter_replay(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, help="Replay at most this many.")] = 1000,
) -> None:
    """Send dead letters back through the pipeline; invalid ones stay, with the new reason."""
    settings = settings_of(ctx)
    try:
        app = create_app(settings)
        result = replay(
            app.context.state,
            app.context.publish,
            limit,
            now=time.time(),
            first_wait=app.context.first_wait,
        )
    except WarmerError as exc:
        fail(str(exc))
    out.print(f"replayed {result.replayed}, still refused {result.refused}")


@deadletter.command("purge")
def deadletter_purge(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
) -> None:
    """Drop every dead letter."""
    if not yes and not typer.confirm("Drop every dead letter?"):
        raise typer.Exit(1)
    try:
        count = build_state(settings_of(ctx)).purge_dead_letters()
    except WarmerError as exc:
        fail(str(exc))
    out.print(f"purged {count}")


def _short(event: Any) -> str:
    text = str(event)
    return text if len(text) <= 120 else text[:117] + "..."
