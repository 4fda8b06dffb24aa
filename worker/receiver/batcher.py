"""Coalescing: events from many requests leave as one task, and each request learns when.

One task per event caps a receiver at the broker's task rate (hundreds a second). A
:class:`Batcher` gathers what arrives within ``window`` seconds (or until ``max_size`` events),
publishes it as one batch in a thread, and only then answers every request that contributed: a
request's 202 still means "your events are with the broker".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Final

from worker.registry.events import Message

__all__ = ["DEFAULT_MAX_SIZE", "DEFAULT_WINDOW", "Batcher"]

#: How long the first event of a batch waits for company. Small against the registry's own
#: notification latency, large enough to gather a burst.
DEFAULT_WINDOW: Final = 0.01
#: Events in one task at most: a task's work stays short, so a redelivery costs little.
DEFAULT_MAX_SIZE: Final = 500

_log = logging.getLogger(__name__)


class Batcher:
    """Gathers messages and publishes them in batches; :meth:`submit` waits for its batch."""

    def __init__(
        self,
        publish: Callable[[list[Message]], None],
        *,
        window: float = DEFAULT_WINDOW,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        if window < 0 or max_size < 1:
            raise ValueError("window must be >= 0 and max_size >= 1")
        self._publish = publish
        self._window = window
        self._max_size = max_size
        self._pending: list[Message] = []
        self._done: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    async def submit(self, messages: Sequence[Message]) -> None:
        """Add messages to the current batch; return once it is published, or raise why not."""
        if not messages:
            return
        loop = asyncio.get_running_loop()
        if self._done is None:
            self._done = loop.create_future()
            self._timer = loop.call_later(self._window, self._flush)
        done = self._done
        self._pending.extend(messages)
        if len(self._pending) >= self._max_size:
            self._flush()
        # shield: a client that hangs up must not cancel the batch other requests wait for.
        await asyncio.shield(done)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, done = self._pending, self._done
        self._pending, self._done = [], None
        if done is None or not batch:
            return
        task = asyncio.get_running_loop().create_task(self._send(batch, done))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _send(self, batch: list[Message], done: asyncio.Future[None]) -> None:
        try:
            # In chunks of max_size: a burst that overflowed stays within the task size.
            for start in range(0, len(batch), self._max_size):
                await asyncio.to_thread(self._publish, batch[start : start + self._max_size])
        except Exception as exc:
            _log.warning("publishing %d events failed: %s", len(batch), exc)
            done.set_exception(exc)
        else:
            done.set_result(None)

    async def drain(self) -> None:
        """Publish what is pending and wait for every batch under way (at shutdown)."""
        self._flush()
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
