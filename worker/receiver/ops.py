"""The receiver's routes for operators, Starlette's: ``GET /healthz`` (alive, with this process's
answer counts), ``GET /readyz`` (every service it needs answers), and the cluster-wide figures
for scrapers, ``GET /metrics`` (Prometheus) and ``GET /debug/vars`` (expvar JSON), from
:mod:`worker.receiver.metrics`.

None needs the token: ``/readyz`` names what is down, never the error, whose text can hold a URL,
a host or a password (a broker URL's). The log has the error, credentials removed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker.config.secretvalues import redact_text
from worker.errors import StateError
from worker.receiver.admission import LOG_NAME
from worker.receiver.metrics import expvar, prometheus_text
from worker.state import StateStore

__all__ = ["OpsRoutes"]

_log = logging.getLogger(LOG_NAME)


class OpsRoutes:
    """``/healthz``, ``/readyz``, ``/metrics`` and ``/debug/vars``.

    ``counts`` are the answers' figures (the events endpoint's), shown by ``/healthz``;
    ``checks`` are what ``/readyz`` runs (each raises when its service is away).
    """

    def __init__(
        self,
        state: StateStore,
        counts: Counter[str],
        checks: Mapping[str, Callable[[], None]],
    ) -> None:
        self._state = state
        self._counts = counts
        self._checks = dict(checks)

    def routes(self) -> list[Route]:
        """The four routes, GET only."""
        return [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/debug/vars", self.debug_vars, methods=["GET"]),
        ]

    async def healthz(self, _: Request) -> JSONResponse:
        """Alive, with the answers' figures of this process."""
        return JSONResponse({"status": "ok", "counts": dict(self._counts)})

    async def readyz(self, _: Request) -> JSONResponse:
        """Ready when every check passes; else 503 naming what is down (never why)."""
        down: list[str] = []
        for name, check in self._checks.items():
            try:
                await asyncio.to_thread(check)
            except Exception as exc:  # any failure means not ready
                down.append(name)
                _log.warning("readyz: %s is down: %s", name, redact_text(str(exc)))
        if down:
            failures = dict.fromkeys(down, "not answering")
            return JSONResponse(
                {"status": "unavailable", "down": down, "failures": failures}, status_code=503
            )
        return JSONResponse({"status": "ready"})

    async def metrics(self, _: Request) -> Response:
        """The figures in Prometheus's text format."""
        try:
            text = await asyncio.to_thread(prometheus_text, self._state)
        except StateError as exc:
            return _error(503, str(exc))
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    async def debug_vars(self, _: Request) -> JSONResponse:
        """The figures as expvar JSON."""
        try:
            return JSONResponse(await asyncio.to_thread(expvar, self._state))
        except StateError as exc:
            return _error(503, str(exc))


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
