"""The receiver's ASGI app, assembled: :func:`create_webhook`.

``POST /events`` (:mod:`worker.receiver.admission`) is reached straight, a plain ASGI app;
Harbor's webhooks (``POST /harbor``, :mod:`worker.receiver.harbor`), the operators' routes
(:mod:`worker.receiver.ops`), the 405 of other methods on ``/events`` and the lifespan go
through Starlette. The lifespan runs the writer of the pulls added up
(:mod:`worker.receiver.pulls`) and, on shutdown, lets what was accepted leave first. Wiring it to
the Celery app and the warmer's clients is :mod:`worker.receiver.assembly`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from worker.config.defaults import PULL_FLUSH_INTERVAL
from worker.receiver.admission import EventsEndpoint, batch_publisher
from worker.receiver.batcher import DEFAULT_MAX_SIZE, DEFAULT_WINDOW, Batcher
from worker.receiver.harbor import HarborEndpoint
from worker.receiver.ops import OpsRoutes
from worker.receiver.pulls import PullCounter
from worker.receiver.request import DEFAULT_MAX_BODY
from worker.registry.events import Message
from worker.registry.versions import RegistryVersion
from worker.state import StateStore

__all__ = ["create_webhook"]


def create_webhook(
    *,
    state: StateStore,
    publish: Callable[[list[Message]], None],
    token: str | None,
    first_wait: float,
    max_body: int = DEFAULT_MAX_BODY,
    checks: Mapping[str, Callable[[], None]] | None = None,
    window: float = DEFAULT_WINDOW,
    max_size: int = DEFAULT_MAX_SIZE,
    registry_version: RegistryVersion | None = None,
    pull_flush_interval: float = PULL_FLUSH_INTERVAL,
    routes: Sequence[BaseRoute] = (),
    hosts: Collection[str] = (),
) -> ASGIApp:
    """The receiver's ASGI app. ``token=None`` accepts every caller (``--insecure-no-auth``).

    ``registry_version`` (the configured one) is checked against the events' media type: a
    3.x registry sends ``events.v2``, a 2.x one ``events.v1``; a mismatch is logged once.

    ``publish`` sends one batch of event messages to the broker (raising when it cannot);
    requests arriving within ``window`` seconds share a batch of at most ``max_size``. Each
    event of a batch is tracked in the ledger before it is published, to be sent again
    ``first_wait`` seconds later unless a task is done with it by then: an accepted event
    survives a broker that loses it.
    ``checks`` are what ``/readyz`` runs (each raises when its service is away); ``routes``
    are served beside the operators' (the deploy hooks, :mod:`worker.receiver.images`).
    ``hosts`` are this registry's (``WARMER_REGISTRY_HOSTS``): a Harbor webhook's resource of
    another host is skipped.
    """
    batcher = Batcher(batch_publisher(state, publish, first_wait), window=window, max_size=max_size)
    pulls = PullCounter(state, pull_flush_interval)
    events = EventsEndpoint(
        state, batcher, pulls, token=token, max_body=max_body, registry_version=registry_version
    )
    harbor = HarborEndpoint(
        state, batcher, pulls, token=token, hosts=hosts, max_body=max_body, counts=events.counts
    )
    ops = OpsRoutes(state, events.counts, checks or {})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        writer = asyncio.create_task(pulls.run())
        yield
        await batcher.drain()  # what was accepted leaves before the process does
        writer.cancel()  # and the pulls counted so far are written
        with contextlib.suppress(asyncio.CancelledError):
            await writer

    rest = Starlette(
        routes=[
            Route("/events", events, methods=["POST"]),  # reached for the 405 of other methods
            *harbor.routes(),
            *ops.routes(),
            *routes,
        ],
        lifespan=lifespan,
    )
    return _Webhook(events, rest)


class _Webhook:
    """``POST /events`` straight to the events endpoint, everything else (lifespan included)
    through Starlette, whose routing, middleware and request objects cost ~30 µs a request: a
    third of what a pull costs the receiver in all (BENCHMARKS.md, lever 6)."""

    def __init__(self, events: ASGIApp, rest: ASGIApp) -> None:
        self._events = events
        self._rest = rest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/events":
            await self._events(scope, receive, send)
        else:
            await self._rest(scope, receive, send)
