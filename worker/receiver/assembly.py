"""Wiring the receiver to the Celery app and the warmer's clients: :func:`build_webhook`.
Running it (uvicorn, one process or several) is the command line's: :mod:`worker.cli.serve`."""

from __future__ import annotations

import logging

from starlette.routing import Route
from starlette.types import ASGIApp

from worker.celeryapp import WarmerCelery
from worker.celeryapp.names import WARM_IMAGE_TASK
from worker.config.settings import Settings
from worker.core.clients import build_cache, build_state, build_store
from worker.core.imagecheck import ImageCheck, check_image, record_checks
from worker.errors import ConfigError
from worker.receiver.images import ImageRoutes
from worker.receiver.request import DEFAULT_MAX_BODY
from worker.receiver.webhook import create_webhook
from worker.registry.reference import ImageReference
from worker.state import StateStore
from worker.storage import Store

__all__ = ["build_webhook"]

_log = logging.getLogger(__name__)


def _broker_check(app: WarmerCelery) -> None:
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def build_webhook(
    settings: Settings,
    app: WarmerCelery,
    *,
    insecure_no_auth: bool = False,
    max_body: int = DEFAULT_MAX_BODY,
) -> ASGIApp:
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
        publish=app.context.publish,
        token=token,
        first_wait=app.context.first_wait,
        max_body=max_body,
        registry_version=settings.registry_version,
        pull_flush_interval=settings.pull_flush_interval,
        checks={
            "cache": build_cache(settings).ping,
            "state": state.ping,
            "broker": lambda: _broker_check(app),
        },
        routes=_image_routes(settings, app, token, state),
        hosts=settings.known_hosts,
    )


def _image_routes(
    settings: Settings, app: WarmerCelery, token: str | None, state: StateStore
) -> list[Route]:
    # /check reads the cache and the store; a receiver without storage configured still starts
    # (it needs none for /events), and its /check says why it cannot answer.
    cache = build_cache(settings)
    stores: list[Store] = []

    def check(reference: ImageReference, platform: str | None) -> ImageCheck:
        if not stores:
            stores.append(build_store(settings))
        checked = check_image(cache, stores[0], reference, platform)
        record_checks(state, [checked])
        return checked

    def send(reference: str, platform: str | None) -> str:
        return str(app.send_task(WARM_IMAGE_TASK, args=[reference, platform]).id)

    images = ImageRoutes(token=token, hosts=settings.known_hosts, check=check, send=send)
    return images.routes()
