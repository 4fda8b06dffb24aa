"""Admission of the registry's envelopes: ``POST /events``, a plain ASGI app (the hot path builds
no request object).

Answers, in the order they are decided:

- 401 without the token (``Authorization: Bearer <token>``, or Basic with it as password);
- 415 for a content type other than the registry's events types or ``application/json``;
- 413 for a body over the limit, refused before it is read whole;
- 400 when the body is not an envelope at all;
- 503 when the state Redis or the broker cannot take the events (the registry sends them again);
- 202 otherwise, once every valid event of the envelope is in the ledger and with the broker
  (pulls are added up here and written a few times a second: :mod:`worker.receiver.pulls`).

A 202 says what became of the envelope's events, each distinct event id once (an id twice in
one envelope is one event): ``accepted``, handed to the broker by this request (and every pull,
which has no dedup); ``duplicates``, already seen, or taken by another request of the same batch
first; ``ignored``, needing no task (tag deletes); ``rejected``, dead-lettered.

Requests arriving together share a batch (:mod:`worker.receiver.batcher`): one task and two
state round trips (dedup and ledger before the broker, seen marks after) for all their events;
:func:`batch_publisher` is what a batch goes through.

A registry resends a refused envelope forever, blocking all its later events: so an event that
is wrong (bad name or digest, unknown action) never makes the envelope fail. It goes to the
dead-letter list with its reason, and the rest of the envelope is accepted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Final

from starlette.types import Receive, Scope, Send

from worker.errors import InvalidEnvelopeError, StateError, UnreadableEnvelopeError
from worker.receiver.batcher import Batcher
from worker.receiver.pulls import PullCounter
from worker.receiver.request import Disconnected, authorized, read_body
from worker.registry.events import Event, Kind, Message, Rejected, classify, parse_envelope
from worker.registry.mediatypes import EVENTS_V1, EVENTS_V2
from worker.registry.versions import RegistryVersion
from worker.state import StateStore

__all__ = ["ACCEPTED_CONTENT_TYPES", "LOG_NAME", "EventsEndpoint", "batch_publisher"]

ACCEPTED_CONTENT_TYPES: Final = frozenset(
    {
        EVENTS_V1,  # registry 2.x
        EVENTS_V2,  # registry 3.x
        "application/json",
    }
)

#: The receiver's log, for its admission and its operators' routes alike: the one name it has
#: always logged under, which logging configurations (and the tests) set levels on.
LOG_NAME: Final = "worker.receiver.webhook"

_log = logging.getLogger(LOG_NAME)


def batch_publisher(
    state: StateStore, publish: Callable[[list[Message]], None], first_wait: float
) -> Callable[[list[Message]], list[bool]]:
    """The function a batch of messages goes through: the ones not seen before are tracked in
    the ledger (sent again ``first_wait`` seconds later unless a task is done with them by
    then), published, then marked seen; it returns, for each message, whether it was new (not
    seen before, nor earlier in the batch)."""

    def admit_and_publish(messages: list[Message]) -> list[bool]:
        # Two state round trips a batch, none in a request's own path. Marked seen only once
        # the broker has them: a resend during a publish that then fails must not pass for done.
        ids = [m[0] for m in messages]
        flags = state.admit(ids, messages, time.time() + first_wait)
        fresh = [m for m, new in zip(messages, flags, strict=True) if new]
        if fresh:
            publish(fresh)
            try:
                state.mark_seen([m[0] for m in fresh])
            except StateError as exc:  # with the broker already: at worst a duplicate later
                _log.warning("could not mark %d events seen: %s", len(fresh), exc)
        return flags

    return admit_and_publish


class EventsEndpoint:
    """``POST /events``: checks a request, reads its envelope and admits its events.

    ``token=None`` accepts every caller. ``registry_version`` (the configured one) is checked
    against the events' media type: a 3.x registry sends ``events.v2``, a 2.x one
    ``events.v1``; a mismatch is logged once. :attr:`counts` adds up the answers' figures.
    """

    def __init__(
        self,
        state: StateStore,
        batcher: Batcher,
        pulls: PullCounter,
        *,
        token: str | None,
        max_body: int,
        registry_version: RegistryVersion | None = None,
    ) -> None:
        self._state = state
        self._batcher = batcher
        self._pulls = pulls
        self._expected = token.encode() if token else None
        self._max_body = max_body
        self.counts: Counter[str] = Counter()
        self.registry_version = registry_version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:  # names come lower-cased; the first one counts
            headers.setdefault(name, value)
        try:
            status, answer = await self._events(headers, receive)
        except Disconnected:
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
        if expected is not None and not authorized(headers.get(b"authorization"), expected):
            self.counts["unauthorized"] += 1
            return 401, {"error": "missing or wrong token"}
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        media = content_type.split(";")[0].strip().lower()
        if media not in ACCEPTED_CONTENT_TYPES:
            refused = f"content type {media or '(none)'} is not a registry's events type"
            return 415, {"error": refused}
        self._check_version(media)
        body = await read_body(receive, headers.get(b"content-length"), self._max_body)
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
            new = await self._batcher.submit([e.as_message() for e in work])
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
        # By position, not by id: the same id in another request of the batch, published as
        # that request's, is this request's duplicate only if this copy was not the new one.
        duplicates = new.count(False)
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
