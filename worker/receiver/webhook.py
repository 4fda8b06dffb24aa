"""The registry's notification endpoint: ``POST /events``, plus ``/healthz`` and ``/readyz``.

Answers, in the order they are decided:

- 401 without the token (``Authorization: Bearer <token>``, or Basic with it as password);
- 415 for a content type other than the registry's events types or ``application/json``;
- 413 for a body over the limit, refused before it is read whole;
- 400 when the body is not an envelope at all;
- 503 when the state Redis or the broker cannot take the events (the registry sends them again);
- 202 otherwise, once every valid event of the envelope is in the ledger and with the broker
  (pulls are added up here and written a few times a second: :mod:`worker.receiver.pulls`).

Requests arriving together share a batch (:mod:`worker.receiver.batcher`): one task and two
state round trips (dedup and ledger before the broker, seen marks after) for all their events.
``POST /events`` is a plain ASGI app, the other routes Starlette's.

``GET /metrics`` (Prometheus) and ``GET /debug/vars`` (expvar JSON) serve the cluster-wide figures.

A registry resends a refused envelope forever, blocking all its later events: so an event that
is wrong (bad name or digest, unknown action) never makes the envelope fail. It goes to the
dead-letter list with its reason, and the rest of the envelope is accepted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from worker.errors import InvalidEnvelopeError, StateError, UnreadableEnvelopeError
from worker.receiver.batcher import DEFAULT_MAX_SIZE, DEFAULT_WINDOW, Batcher
from worker.receiver.metrics import expvar, prometheus_text
from worker.receiver.pulls import PullCounter
from worker.registry.events import Event, Kind, Message, Rejected, classify, parse_envelope
from worker.registry.mediatypes import EVENTS_V1, EVENTS_V2
from worker.registry.versions import RegistryVersion
from worker.state import StateStore

__all__ = [
    "ACCEPTED_CONTENT_TYPES",
    "DEFAULT_MAX_BODY",
    "DEFAULT_PULL_FLUSH_INTERVAL",
    "create_webhook",
]

ACCEPTED_CONTENT_TYPES: Final = frozenset(
    {
        EVENTS_V1,  # registry 2.x
        EVENTS_V2,  # registry 3.x
        "application/json",
    }
)
#: Seconds between writes of the pulls the receiver added up (a few a second).
DEFAULT_PULL_FLUSH_INTERVAL: Final = 0.25
#: Largest body read; a 2.x envelope of a few events is a few KiB.
DEFAULT_MAX_BODY: Final = 1024 * 1024

_log = logging.getLogger(__name__)
# "scheme://user:password@" in an error's text, wherever it is.
_CREDENTIALS_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


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
    pull_flush_interval: float = DEFAULT_PULL_FLUSH_INTERVAL,
) -> ASGIApp:
    """The receiver's ASGI app. ``token=None`` accepts every caller (``--insecure-no-auth``).

    ``registry_version`` (the configured one) is checked against the events' media type: a
    3.x registry sends ``events.v2``, a 2.x one ``events.v1``; a mismatch is logged once.

    ``publish`` sends one batch of event messages to the broker (raising when it cannot);
    requests arriving within ``window`` seconds share a batch of at most ``max_size``. Each
    event of a batch is tracked in the ledger before it is published, to be sent again
    ``first_wait`` seconds later unless a task is done with it by then: an accepted event
    survives a broker that loses it.
    ``checks`` are what ``/readyz`` runs (each raises when its service is away).
    """

    def admit_and_publish(messages: list[Message]) -> set[str]:
        # Two state round trips a batch, none in a request's own path: the events not seen
        # before are tracked in the ledger, published, then marked seen (only once the broker
        # has them: a resend during a publish that then fails must not pass for done).
        # Returns the ids already seen (duplicates).
        ids = [m[0] for m in messages]
        flags = state.admit(ids, messages, time.time() + first_wait)
        fresh = [m for m, new in zip(messages, flags, strict=True) if new]
        if fresh:
            publish(fresh)
            try:
                state.mark_seen([m[0] for m in fresh])
            except StateError as exc:  # with the broker already: at worst a duplicate later
                _log.warning("could not mark %d events seen: %s", len(fresh), exc)
        return set(ids) - {m[0] for m in fresh}

    batcher = Batcher(admit_and_publish, window=window, max_size=max_size)
    pulls = PullCounter(state, pull_flush_interval)
    receiver = _Receiver(
        state, batcher, pulls, token=token, max_body=max_body, checks=dict(checks or {})
    )
    receiver.registry_version = registry_version

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
            Route("/events", receiver, methods=["POST"]),  # reached for the 405 of other methods
            Route("/healthz", receiver.healthz, methods=["GET"]),
            Route("/readyz", receiver.readyz, methods=["GET"]),
            Route("/metrics", receiver.metrics, methods=["GET"]),
            Route("/debug/vars", receiver.debug_vars, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    return _Webhook(receiver, rest)


class _Webhook:
    """``POST /events`` straight to the receiver, everything else (lifespan included) through
    Starlette, whose routing, middleware and request objects cost ~30 µs a request: a third of
    what a pull costs the receiver in all (BENCHMARKS.md, lever 6)."""

    def __init__(self, events: ASGIApp, rest: ASGIApp) -> None:
        self._events = events
        self._rest = rest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/events":
            await self._events(scope, receive, send)
        else:
            await self._rest(scope, receive, send)


class _Receiver:
    def __init__(
        self,
        state: StateStore,
        batcher: Batcher,
        pulls: PullCounter,
        *,
        token: str | None,
        max_body: int,
        checks: dict[str, Callable[[], None]],
    ) -> None:
        self._state = state
        self._batcher = batcher
        self._pulls = pulls
        self._expected = token.encode() if token else None
        self._max_body = max_body
        self._checks = checks
        self.counts: Counter[str] = Counter()
        self.registry_version: RegistryVersion | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /events``, as a plain ASGI app: the hot path builds no request object."""
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:  # names come lower-cased; the first one counts
            headers.setdefault(name, value)
        try:
            status, answer = await self._events(headers, receive)
        except _Disconnected:
            return  # the registry hung up before its body was read: nothing was accepted
        body = json.dumps(answer, separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _events(
        self, headers: dict[bytes, bytes], receive: Receive
    ) -> tuple[int, dict[str, Any]]:
        expected = self._expected
        if expected is not None and not _authorized(headers.get(b"authorization"), expected):
            self.counts["unauthorized"] += 1
            return 401, {"error": "missing or wrong token"}
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        media = content_type.split(";")[0].strip().lower()
        if media not in ACCEPTED_CONTENT_TYPES:
            refused = f"content type {media or '(none)'} is not a registry's events type"
            return 415, {"error": refused}
        self._check_version(media)
        body = await _read_body(receive, headers.get(b"content-length"), self._max_body)
        if body is None:
            return 413, {"error": f"body is over {self._max_body} bytes"}
        try:
            raw = parse_envelope(body)
        except UnreadableEnvelopeError as exc:
            return await self._dead_letter_body(body, str(exc))
        except InvalidEnvelopeError as exc:
            return 400, {"error": str(exc)}
        return await self._accept(raw)

    async def _dead_letter_body(self, body: bytes, reason: str) -> tuple[int, dict[str, Any]]:
        # JSON we cannot take apart: kept whole for a person, and accepted, so the registry's
        # queue moves on (a refusal would be resent forever).
        letter = (reason, body.decode("utf-8", errors="replace"))
        try:
            await asyncio.to_thread(self._state.dead_letter, [letter])
        except StateError as exc:
            _log.error("state Redis unavailable: %s", exc)
            return 503, {"error": "state store unavailable, send again later"}
        _log.warning("dead-lettered a whole envelope: %s", reason[:300])
        figures = {"accepted": 0, "duplicates": 0, "ignored": 0, "rejected": 1}
        self.counts.update(figures)
        return 202, figures

    async def _accept(self, raw: list[Any]) -> tuple[int, dict[str, Any]]:
        valid: dict[str, Event] = {}
        rejected: list[Rejected] = []
        pulled: list[str] = []
        for item in raw:
            classified = classify(item)
            if isinstance(classified, Rejected):
                rejected.append(classified)
            elif classified.kind is Kind.ACCESS:
                pulled.append(classified.repository)  # no task, no dedup key: a sum
            else:
                valid.setdefault(classified.id, classified)  # the same id twice: once
        work = [e for e in valid.values() if e.kind is not Kind.IGNORE]
        ignored = [e.id for e in valid.values() if e.kind is Kind.IGNORE]
        try:
            if rejected:
                letters = [(r.reason, r.event) for r in rejected]
                await asyncio.to_thread(self._state.dead_letter, letters)
                # One line an envelope: a body of many bad events must not flood the log.
                _log.warning(
                    "dead-lettered %d events of an envelope; first reason: %s",
                    len(rejected),
                    rejected[0].reason[:300],  # a reason quotes the event: keep the line short
                )
            # Tag deletes are rare and never sent: their dedup stays here, off the batch.
            fresh_ignored = await asyncio.to_thread(self._state.unseen, ignored) if ignored else []
            seen = await self._batcher.submit([e.as_message() for e in work])
        except StateError as exc:  # raised here or by the batch's dedup
            _log.error("state Redis unavailable: %s", exc)
            return 503, {"error": "state store unavailable, send again later"}
        except Exception as exc:  # whatever the broker client raises: the registry retries
            _log.error("broker unavailable: %s", exc)
            return 503, {"error": "broker unavailable, send again later"}
        if fresh_ignored:
            try:
                await asyncio.to_thread(self._state.mark_seen, fresh_ignored)
            except StateError as exc:
                _log.warning("could not mark %d events seen: %s", len(fresh_ignored), exc)
        duplicates = sum(1 for e in work if e.id in seen)
        self._pulls.add(pulled)
        figures = {
            "accepted": len(work) - duplicates + len(pulled),
            "duplicates": duplicates + len(ignored) - len(fresh_ignored),
            "ignored": len(fresh_ignored),
            "rejected": len(rejected),
        }
        self.counts.update(figures)
        return 202, figures

    def _check_version(self, media: str) -> None:
        # The cache a 3.x registry reads differs from a 2.x one's: a wrong
        # WARMER_REGISTRY_VERSION leaves first pulls missing. The events tell which it is.
        version = self.registry_version
        sent = {EVENTS_V1: "2", EVENTS_V2: "3"}.get(media)
        if version is None or sent is None or version.value.split(".")[0] == sent:
            return
        _log.warning(
            "the registry sends %s events (registry %s.x) but WARMER_REGISTRY_VERSION=%s: "
            "set WARMER_REGISTRY_VERSION=%s, or the warmed cache will not be the one it reads",
            media,
            sent,
            version.value,
            sent,
        )
        self.registry_version = None  # once is enough

    async def healthz(self, _: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "counts": dict(self.counts)})

    async def metrics(self, _: Request) -> Response:
        try:
            text = await asyncio.to_thread(prometheus_text, self._state)
        except StateError as exc:
            return _error(503, str(exc))
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    async def debug_vars(self, _: Request) -> JSONResponse:
        try:
            return JSONResponse(await asyncio.to_thread(expvar, self._state))
        except StateError as exc:
            return _error(503, str(exc))

    async def readyz(self, _: Request) -> JSONResponse:
        # Unauthenticated: it names what is down, never the error, whose text can hold a URL,
        # a host or a password (a broker URL's). The log has the error, credentials removed.
        down: list[str] = []
        for name, check in self._checks.items():
            try:
                await asyncio.to_thread(check)
            except Exception as exc:  # any failure means not ready
                down.append(name)
                _log.warning("readyz: %s is down: %s", name, _without_credentials(str(exc)))
        if down:
            failures = dict.fromkeys(down, "not answering")
            return JSONResponse(
                {"status": "unavailable", "down": down, "failures": failures}, status_code=503
            )
        return JSONResponse({"status": "ready"})


def _without_credentials(text: str) -> str:
    return _CREDENTIALS_RE.sub(r"\1***@", text)


def _authorized(header: bytes | None, expected: bytes) -> bool:
    if not header:
        return False
    scheme, _, credentials = header.partition(b" ")
    scheme = scheme.lower()
    if scheme == b"bearer":
        given = credentials.strip()
    elif scheme == b"basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        given = decoded.partition(b":")[2]
    else:
        return False
    return hmac.compare_digest(given, expected)


class _Disconnected(Exception):
    """Raised when the client hung up before its body was read whole."""


async def _read_body(receive: Receive, declared: bytes | None, limit: int) -> bytes | None:
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None  # refused before a byte is read
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        body += message.get("body", b"")
        if len(body) > limit:  # chunked or lying about its length
            return None
        if not message.get("more_body", False):
            return bytes(body)
