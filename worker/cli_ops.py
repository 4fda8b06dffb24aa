"""``warmer`` commands that run the service: ``webhook``, ``worker``, ``beat``, ``deadletter``."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from worker.celery_app import create_app
from worker.clients import build_state, build_store
from worker.console import fail, out, print_json, settings_of
from worker.demo import run_demo
from worker.errors import WarmerError
from worker.ledger import replay
from worker.sentry import init_sentry
from worker.serve import build_webhook, serve_webhook
from worker.stats_view import stats_table, stats_view
from worker.up import run_up
from worker.webhook import DEFAULT_MAX_BODY

__all__ = ["register_ops"]

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
deadletter = typer.Typer(
    help="Read, replay or purge the events the warmer gave up on.", no_args_is_help=True
)


def webhook(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    max_body: Annotated[int, typer.Option(help="Largest body accepted, in bytes.")] = (
        DEFAULT_MAX_BODY
    ),
    insecure_no_auth: Annotated[
        bool, typer.Option("--insecure-no-auth", help="Accept callers without the token.")
    ] = False,
) -> None:
    """Serve POST /events, the registry's notification endpoint (and /healthz, /readyz)."""
    settings = settings_of(ctx)
    init_sentry(settings, "webhook")
    try:
        asgi = build_webhook(
            settings, create_app(settings), insecure_no_auth=insecure_no_auth, max_body=max_body
        )
    except WarmerError as exc:
        fail(str(exc))
    serve_webhook(asgi, host, port)


def up(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address the receiver listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port the receiver listens on.")] = 8000,
    dev: Annotated[
        bool,
        typer.Option("--dev", help="Throwaway defaults: own Redis, ./var/registry, a token."),
    ] = False,
) -> None:
    """Receiver, worker and beat together, for one machine (make run is: warmer up --dev)."""
    settings = settings_of(ctx)
    init_sentry(settings, "up")
    try:
        run_up(settings, host, port, dev=dev, say=lambda text: out.print(text, soft_wrap=True))
    except WarmerError as exc:
        fail(str(exc))


def worker(ctx: typer.Context) -> None:
    """Run a Celery worker for the warmer's tasks; extra options go to celery worker."""
    settings = settings_of(ctx)
    try:
        build_store(settings).check()  # every task needs it: say so now, not per task
    except WarmerError as exc:
        fail(str(exc))
    init_sentry(settings, "worker")
    create_app(settings).worker_main(["worker", "--loglevel=INFO", *ctx.args])


def beat(ctx: typer.Context) -> None:
    """Run Celery beat for the warmer's schedules; extra options go to celery beat."""
    settings = settings_of(ctx)
    init_sentry(settings, "beat")
    create_app(settings).start(["beat", "--loglevel=INFO", *ctx.args])


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
    table = Table("#", "reason", "event", title=f"{total} dead letters")
    for i, letter in enumerate(letters):
        table.add_row(str(i), letter.reason, _short(letter.event))
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


def stats(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on the last line.")] = (
        False
    ),
    watch: Annotated[bool, typer.Option("--watch", help="Refresh every 2 s until Ctrl-C.")] = (
        False
    ),
) -> None:
    """The warmer's cluster-wide figures: totals, hit ratio, recent intervals."""
    try:
        state = build_state(settings_of(ctx))
        view = stats_view(state)
    except WarmerError as exc:
        fail(str(exc))
    if as_json:
        print_json(view)
        return
    if not watch:
        out.print(stats_table(view))
        return
    with Live(stats_table(view), console=out, refresh_per_second=1) as live:
        try:
            while True:
                time.sleep(2)
                live.update(stats_table(stats_view(state)))
        except KeyboardInterrupt:
            pass


def demo() -> None:
    """A registry, a replica, the warmer: first-pull cache misses with and without it."""
    try:
        run_demo(say=lambda text: out.print(text, soft_wrap=True))
    except WarmerError as exc:
        fail(str(exc))


def _short(event: Any) -> str:
    text = str(event)
    return text if len(text) <= 120 else text[:117] + "..."


def register_ops(app: typer.Typer) -> None:
    """Add the service commands to the ``warmer`` app."""
    app.command()(webhook)
    app.command()(up)
    app.command()(stats)
    app.command(context_settings=_PASS_THROUGH)(worker)
    app.command(context_settings=_PASS_THROUGH)(beat)
    app.add_typer(deadletter, name="deadletter")
    app.command()(demo)
