"""``warmer`` commands that run the warmer: ``webhook``, ``worker``, ``beat``, ``up``, ``demo``,
``flower``."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from starlette.types import ASGIApp

from tasks import worker_app
from worker.celeryapp import create_app
from worker.cli.console import fail, out, settings_of
from worker.cli.demo import run_demo
from worker.cli.sentry import init_sentry
from worker.cli.serve import listen, serve_webhooks
from worker.cli.up import run_up
from worker.config.secretvalues import is_placeholder
from worker.core.clients import build_store
from worker.core.eviction import check_never_evicts
from worker.errors import WarmerError
from worker.receiver.assembly import build_webhook
from worker.receiver.request import DEFAULT_MAX_BODY

__all__ = ["beat", "demo", "flower", "up", "webhook", "worker"]


def webhook(  # noqa: PLR0917 (typer passes each option by name)
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    max_body: Annotated[int, typer.Option(help="Largest body accepted, in bytes.")] = (
        DEFAULT_MAX_BODY
    ),
    insecure_no_auth: Annotated[
        bool, typer.Option("--insecure-no-auth", help="Accept callers without the token.")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            min=1, help="Receiver processes on the port (one core each, not the worker's)."
        ),
    ] = 1,
) -> None:
    """Serve POST /events (registry notifications), /healthz, /readyz, /metrics, /debug/vars."""
    settings = settings_of(ctx)

    def build() -> ASGIApp:
        init_sentry(settings, "webhook")
        return build_webhook(
            settings, create_app(settings), insecure_no_auth=insecure_no_auth, max_body=max_body
        )

    try:
        listener = listen(host, port)  # a port in use: one line, before anything starts
        asgi = build()  # a configuration error stops here, before any receiver process
        check_never_evicts(settings)
    except WarmerError as exc:
        fail(str(exc))
    # One receiver serves the app built above; several build their own app and clients, each in
    # its own process (the one above then only checked the configuration).
    serve_webhooks(lambda: asgi if workers == 1 else build(), listener, workers)


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
        check_never_evicts(settings)
    except WarmerError as exc:
        fail(str(exc))
    init_sentry(settings, "worker")
    worker_app(settings).worker_main(["worker", *ctx.args])


def beat(ctx: typer.Context) -> None:
    """Run Celery beat for the warmer's schedules; extra options go to celery beat."""
    settings = settings_of(ctx)
    init_sentry(settings, "beat")
    create_app(settings).start(["beat", *ctx.args])


def flower(
    ctx: typer.Context,
    address: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5555,
) -> None:
    """Flower on the warmer's app, behind basic auth from FLOWER_USER and FLOWER_PASSWORD."""
    settings = settings_of(ctx)
    user, password = settings.flower_user, settings.flower_password
    if not user or password is None or not password.get_secret_value():
        fail(
            "FLOWER_USER and FLOWER_PASSWORD must be set: Flower shows every task and can "
            "stop workers"
        )
    if is_placeholder(password.get_secret_value()):
        fail("FLOWER_PASSWORD is the example's placeholder: set a password of your own")
    # Through the environment Flower reads, never a command line (ps, docker inspect).
    os.environ["FLOWER_BASIC_AUTH"] = f"{user}:{password.get_secret_value()}"
    create_app(settings).start(["flower", f"--address={address}", f"--port={port}"])


def demo() -> None:
    """A registry, a replica, the warmer: first-pull cache misses with and without it."""
    try:
        run_demo(say=lambda text: out.print(text, soft_wrap=True))
    except WarmerError as exc:
        fail(str(exc))
