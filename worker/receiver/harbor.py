"""``POST /harbor``: Harbor's project webhooks, both its formats ("Default" and "CloudEvents"),
read by :mod:`worker.registry.harbor` and admitted like the registry's events.

A pushed artifact becomes a ``warm-manifest`` event, a deleted one an ``evict`` event: they go
through the same batcher, ledger and broker as ``/events`` (an accepted event is never lost),
and a worker applies them through the one write path where a delete always wins. A pull is
added up with the registry's pulls (:mod:`worker.receiver.pulls`).

Answers, in the order they are decided:

- 401 without the token: Harbor sends its webhook's "Auth Header" verbatim as
  ``Authorization``, so the header to configure there is ``Bearer <token>``;
- 415 for a content type other than ``application/json`` or ``application/cloudevents+json``;
- 413 for a body over the limit of ``/events``, refused before it is read whole;
- 400 when the body is no Harbor webhook (the reason says why), or when every resource of it is
  wrong: Harbor shows the failed delivery in the webhook's log;
- 503 when the state Redis or the broker cannot take the events (Harbor sends it again);
- 202 otherwise: ``{"type", "accepted", "duplicates", "skipped", "rejected", "other"}``, with
  the ``reasons`` of what was skipped or rejected. ``skipped`` counts resources of another
  registry (their host is not in ``WARMER_REGISTRY_HOSTS``), ``other`` the events of types
  the warmer does not act on (scans, quotas, replication, tag retention, ...). A rejected
  resource goes to the dead-letter list with the Harbor type and the reason, as a rejected
  event of ``/events`` does.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Collection
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from worker.errors import InvalidEnvelopeError, StateError
from worker.receiver.admission import LOG_NAME
from worker.receiver.batcher import Batcher
from worker.receiver.pulls import PullCounter
from worker.receiver.request import Disconnected, authorized, read_body
from worker.registry.events import Kind
from worker.registry.harbor import HARBOR_CONTENT_TYPES, HarborAction, HarborNotice, parse_harbor
from worker.state import StateStore

__all__ = ["HARBOR_PATH", "HarborEndpoint"]

#: Where Harbor's webhooks are received.
HARBOR_PATH: Final = "/harbor"
#: Reasons an answer lists at most.
_MAX_REASONS: Final = 10

_log = logging.getLogger(LOG_NAME)


class HarborEndpoint:
    """``POST /harbor``. ``token=None`` accepts every caller; ``hosts`` are the hosts under which
    clients reach this registry (``WARMER_REGISTRY_HOSTS``: Harbor's external host belongs
    there). ``counts`` (the receiver's answer figures, shown by ``/healthz``) gains
    ``harbor_<figure>`` entries; ``state`` keeps the dead letters."""

    def __init__(
        self,
        state: StateStore,
        batcher: Batcher,
        pulls: PullCounter,
        *,
        token: str | None,
        hosts: Collection[str],
        max_body: int,
        counts: Counter[str],
    ) -> None:
        self._state = state
        self._batcher = batcher
        self._pulls = pulls
        self._expected = token.encode() if token else None
        self._hosts = frozenset(hosts)
        self._max_body = max_body
        self.counts = counts
        self._told_hosts = False

    def routes(self) -> list[Route]:
        """The one route, POST only."""
        return [Route(HARBOR_PATH, self.receive, methods=["POST"])]

    async def receive(self, request: Request) -> JSONResponse:
        """Read one Harbor webhook and admit what it asks."""
        status, answer = await self._answer(request)
        if status >= 400:
            self.counts[f"harbor_{status}"] += 1
        return JSONResponse(answer, status_code=status)

    async def _answer(self, request: Request) -> tuple[int, dict[str, Any]]:
        header = request.headers.get("authorization")
        if self._expected is not None and not authorized(
            header.encode("latin-1") if header else None, self._expected
        ):
            hint = "missing or wrong token: Harbor's Auth Header is 'Bearer <WARMER_WEBHOOK_TOKEN>'"
            return 401, {"error": hint}
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in HARBOR_CONTENT_TYPES:
            refused = f"content type {media or '(none)'} is not a Harbor webhook's"
            return 415, {"error": refused}
        declared = request.headers.get("content-length")
        try:
            body = await read_body(
                request.receive, declared.encode() if declared else None, self._max_body
            )
        except Disconnected:
            return 400, {"error": "the client hung up before its body was read"}
        if body is None:
            return 413, {"error": f"body is over {self._max_body} bytes"}
        try:
            notice = parse_harbor(body, self._hosts)
        except InvalidEnvelopeError as exc:
            _log.warning("refused a Harbor webhook: %s", str(exc)[:300])
            return 400, {"error": str(exc)[:500]}
        return await self._admit(notice)

    async def _admit(self, notice: HarborNotice) -> tuple[int, dict[str, Any]]:
        reasons = [s.reason for s in notice.skipped] + [r.reason for r in notice.rejected]
        if notice.rejected and not notice.events and not notice.skipped:
            _log.warning("refused a Harbor %s webhook: %s", notice.type, reasons[0])
            return 400, {"error": reasons[0], "reasons": reasons[:_MAX_REASONS]}
        self._tell(notice)
        work = [e for e in notice.events if e.kind is not Kind.ACCESS]
        pulled = [e.repository for e in notice.events if e.kind is Kind.ACCESS]
        try:
            if notice.rejected:  # a 202 of good and wrong resources: the wrong ones are kept
                letters = [
                    (f"Harbor {notice.type} resource: {r.reason}", r.event) for r in notice.rejected
                ]
                await asyncio.to_thread(self._state.dead_letter, letters)
            new = await self._batcher.submit([e.as_message() for e in work]) if work else []
        except StateError as exc:
            _log.error("state Redis unavailable: %s", exc)
            return 503, {"error": "state store unavailable, send again later"}
        except Exception as exc:  # whatever the broker client raises: Harbor sends it again
            _log.error("broker unavailable: %s", exc)
            return 503, {"error": "broker unavailable, send again later"}
        self._pulls.add(pulled)
        figures = {
            "accepted": new.count(True) + len(pulled),
            "duplicates": new.count(False),
            "skipped": len(notice.skipped),
            "rejected": len(notice.rejected),
            "other": int(notice.action is HarborAction.OTHER),
        }
        self.counts.update({f"harbor_{k}": v for k, v in figures.items() if v})
        answer: dict[str, Any] = {"type": notice.type, **figures}
        if reasons:
            answer["reasons"] = reasons[:_MAX_REASONS]
        return 202, answer

    def _tell(self, notice: HarborNotice) -> None:
        # One line a webhook that is not acted on in full; the hint about the hosts once.
        if notice.action is HarborAction.OTHER:
            _log.info("Harbor %s webhook acknowledged: the warmer does not act on it", notice.type)
        for rejected in notice.rejected:
            _log.warning(
                "a resource of a Harbor %s webhook is wrong: %s", notice.type, rejected.reason
            )
        if notice.skipped:
            _log.info(
                "skipped %d resources of a Harbor %s webhook: %s",
                len(notice.skipped),
                notice.type,
                notice.skipped[0].reason,
            )
            if not self._told_hosts and not notice.events:
                self._told_hosts = True
                _log.warning(
                    "a Harbor webhook named another registry: set WARMER_REGISTRY_HOSTS to "
                    "Harbor's external host (hostname[:port] of its external_url) if it is this one"
                )
