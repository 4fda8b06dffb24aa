"""Pull events, the bulk of a registry's stream, added up in the receiver.

A pull needs no task and no dedup key: all the warmer keeps of it is when its repository was
last pulled (hot-first re-warm) and how often. So the receiver counts pulls per repository in
memory and writes the sums a few times a second, in one round trip: memory and broker traffic
stay flat however many pulls arrive. A duplicate pull (a registry's resend) counts twice, which
is harmless; a write that fails is added back and tried at the next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterable

from worker.errors import StateError
from worker.state import StateStore

__all__ = ["PullCounter"]

_log = logging.getLogger(__name__)


class PullCounter:
    """Sums of pulls per repository, written every ``interval`` seconds while :meth:`run` runs."""

    def __init__(self, state: StateStore, interval: float) -> None:
        self._state = state
        self._interval = interval
        self._sums: Counter[str] = Counter()

    def add(self, repositories: Iterable[str]) -> None:
        """Count one pull of each repository given (a repository may come many times)."""
        self._sums.update(repositories)

    async def run(self) -> None:
        """Write the sums every interval until cancelled; then write what is left."""
        try:
            while True:
                await asyncio.sleep(self._interval)
                await self.flush()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.flush())

    async def flush(self) -> None:
        """Write the sums gathered so far (kept for the next try if the state Redis is away)."""
        if not self._sums:
            return
        sums, self._sums = self._sums, Counter()
        try:
            await asyncio.to_thread(self._state.record_pulls, dict(sums), time.time())
        except StateError as exc:
            self._sums.update(sums)  # bounded: one entry a repository
            _log.warning("could not record pulls of %d repositories: %s", len(sums), exc)
