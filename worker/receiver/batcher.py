"""Coalescing: events from many requests leave as one task, and each request learns when.

One task per event caps a receiver at the broker's task rate (hundreds a second). A
:class:`Batcher` publishes what arrived as one batch, in one thread hop, and only then answers
every request that contributed: a request's 202 still means "your events are with the broker".
A batch leaves at once when none left within the last ``window`` seconds (a lone event does not
wait), else ``window`` after the last one (so at most 1/window tasks a second), or as soon as it
holds ``max_size`` events. The publish function says of each message of a chunk whether it was
new (not a duplicate); each request gets back what was said of its own messages, by position: two
requests may hold the same event id, and only the first one's copy is new.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from typing import Final

from worker.registry.events import Message

__all__ = ["DEFAULT_MAX_SIZE", "DEFAULT_WINDOW", "Batcher"]

#: The least time between two batches: small against the registry's own notification latency,
#: large enough that a burst leaves in few tasks (at most 200 a second). Each request waits for
#: its batch, so a sender's requests are at most one a window: 10 ms capped 32 connections near
#: 2,900 events/s, below what the worker warms (BENCHMARKS.md, "the batch window").
DEFAULT_WINDOW: Final = 0.005
#: Events in one task at most: a task's work stays short, so a redelivery costs little.
DEFAULT_MAX_SIZE: Final = 500

_log = logging.getLogger(__name__)


class Batcher:
    """Gathers messages and publishes them in batches; :meth:`submit` waits for its batch."""

    def __init__(
        self,
        publish: Callable[[list[Message]], Sequence[bool] | None],
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
        self._done: asyncio.Future[tuple[bool, ...]] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._last = -math.inf  # loop time of the last batch

    async def submit(self, messages: Sequence[Message]) -> list[bool]:
        """Add messages to the current batch; once it is published, return, for each of these
        messages, whether the publish function found it new; raise why it was not published."""
        if not messages:
            return []
        loop = asyncio.get_running_loop()
        if self._done is None:
            self._done = loop.create_future()
            # A delay of 0 still lets what arrives in this turn of the loop join the batch.
            delay = max(0.0, self._last + self._window - loop.time())
            self._timer = loop.call_later(delay, self._flush)
        done = self._done
        # Where these messages sit in the batch: the answer is about the whole batch, and a
        # request's share of it is found by position (by id, a duplicate in another request of
        # the batch would pass for this one's).
        start = len(self._pending)
        self._pending.extend(messages)
        end = len(self._pending)
        if end >= self._max_size:
            self._flush()
        # shield: a client that hangs up must not cancel the batch other requests wait for.
        return list((await asyncio.shield(done))[start:end])

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, done = self._pending, self._done
        self._pending, self._done = [], None
        if done is None or not batch:
            return
        loop = asyncio.get_running_loop()
        self._last = loop.time()
        task = loop.create_task(self._send(batch, done))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _send(self, batch: list[Message], done: asyncio.Future[tuple[bool, ...]]) -> None:
        try:
            said = await asyncio.to_thread(self._publish_all, batch)
        except Exception as exc:
            _log.warning("publishing %d events failed: %s", len(batch), exc)
            done.set_exception(exc)
        else:
            done.set_result(said)

    def _publish_all(self, batch: list[Message]) -> tuple[bool, ...]:
        # One thread hop a batch. In chunks of max_size: a burst that overflowed stays within
        # the task size. The flags line up with the batch, chunk after chunk.
        new: list[bool] = []
        for start in range(0, len(batch), self._max_size):
            chunk = batch[start : start + self._max_size]
            said = self._publish(chunk)
            if said is None:  # a publish function that tells nothing: every message is new
                said = [True] * len(chunk)
            elif len(said) != len(chunk):
                raise ValueError(f"the publish function said {len(said)} of {len(chunk)} messages")
            new.extend(said)
        return tuple(new)

    async def drain(self) -> None:
        """Publish what is pending and wait for every batch under way (at shutdown)."""
        self._flush()
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
