"""Wiring the receiver to the Celery app, and running it under uvicorn."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Final

import uvicorn
from starlette.applications import Starlette

from worker.celeryapp import WarmerCelery
from worker.core.clients import build_cache, build_state
from worker.errors import ConfigError
from worker.receiver.webhook import DEFAULT_MAX_BODY, create_webhook
from worker.registry.events import Message
from worker.settings import Settings

__all__ = ["GRACEFUL_SHUTDOWN_SECONDS", "build_webhook", "serve_webhook", "tracked_publisher"]

#: How long open requests may take to finish at shutdown; the batches they were accepted into
#: are published after (the app's lifespan drains the batcher).
GRACEFUL_SHUTDOWN_SECONDS: Final = 5


def tracked_publisher(app: WarmerCelery) -> Callable[[list[Message]], None]:
    """Publishing for the receiver: each message is tracked in the ledger before it is sent,
    so an accepted event survives a broker that loses it."""

    def publish(messages: list[Message]) -> None:
        app.context.state.track(messages, time.time() + app.context.first_wait)
        app.context.publish(messages)

    return publish


def _broker_check(app: WarmerCelery) -> None:
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def build_webhook(
    settings: Settings,
    app: WarmerCelery,
    *,
    insecure_no_auth: bool = False,
    max_body: int = DEFAULT_MAX_BODY,
) -> Starlette:
    """The receiver, publishing to ``app``; refuses to exist without a token unless told to."""
    token = settings.webhook_token.get_secret_value() if settings.webhook_token else None
    if token is None and not insecure_no_auth:
        raise ConfigError(
            "WARMER_WEBHOOK_TOKEN is not set: set it (and the same Bearer token in the "
            "registry's notifications headers), or pass --insecure-no-auth"
        )
    state = build_state(settings)
    return create_webhook(
        state=state,
        publish=tracked_publisher(app),
        token=token,
        max_body=max_body,
        registry_version=settings.registry_version,
        pull_flush_interval=settings.pull_flush_interval,
        checks={
            "cache": build_cache(settings).ping,
            "state": state.ping,
            "broker": lambda: _broker_check(app),
        },
    )


def serve_webhook(asgi: Starlette, host: str, port: int) -> None:
    """Run the receiver until SIGTERM or SIGINT; then drain what was accepted, and return."""
    # uvicorn shuts down on SIGTERM, then raises the signal again with the handler it found:
    # Python's default would end the process on the spot, skipping every cleanup of the
    # caller (``warmer up`` stopping its worker). A SystemExit unwinds through it instead.
    signal.signal(signal.SIGTERM, _exit)
    # access_log off: every registry request would be a line; the receiver logs what matters.
    uvicorn.run(
        asgi,
        host=host,
        port=port,
        access_log=False,
        log_level="info",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def _exit(signum: int, _: object) -> None:
    raise SystemExit(0)
