"""What a dead letter holds, and how large one may be: an event the warmer gave up on, kept
for a person to read (``warmer deadletters``). :class:`DeadLetterList` keeps the list (its keys
spelled in :mod:`worker.state.store`, which hands its callers the list's methods). Every letter
added is counted in the figures' ``dead_lettered`` (``warmer_dead_lettered_total``) here, in the
transaction that adds it: wherever a letter comes from, it is counted once."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import redis

from worker.state.redisio import state_call

__all__ = ["MAX_LETTER_BYTES", "MAX_REASON_CHARS", "DeadLetter", "DeadLetterList", "letter"]

#: A dead letter's largest size (a registry's event is well under 2 KiB); past it the event is
#: kept cut, with its length and hash. The list is at most this times WARMER_DEADLETTER_MAX.
MAX_LETTER_BYTES: Final = 8192
MAX_REASON_CHARS: Final = 500


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event the warmer gave up on: when, why, and the event as it arrived."""

    at: float
    reason: str
    event: Any

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"at": self.at, "reason": self.reason, "event": self.event}


def letter(at: float, reason: str, event: Any) -> str:
    """The JSON of a dead letter, at most :data:`MAX_LETTER_BYTES` long."""
    reason = reason[:MAX_REASON_CHARS]
    try:
        text = json.dumps(DeadLetter(at, reason, event).as_dict(), default=str)
    except (ValueError, RecursionError) as exc:  # nesting or a number json cannot write back
        return json.dumps(DeadLetter(at, reason, f"<event not serializable: {exc!r}>").as_dict())
    if len(text) <= MAX_LETTER_BYTES:
        return text
    # The cap counts letters, so a letter is bounded too: a 1 MiB event would make the list
    # 10 GB. What is kept says what it was; an event this large never was a registry's.
    raw = json.dumps(event, default=str)
    digest = hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()
    head = raw[: MAX_LETTER_BYTES // 2]
    cut = f"<event of {len(raw)} characters, sha256 {digest}, cut: {head}...>"
    return json.dumps(DeadLetter(at, reason, cut).as_dict())


class DeadLetterList:
    """The dead-letter list (oldest first, at most ``cap``), and the count its cap dropped."""

    def __init__(
        self, client: redis.Redis, key: str, dropped_key: str, cap: int, counted: tuple[str, str]
    ) -> None:
        self._redis = client
        self._key = key
        self._dropped = dropped_key
        self._cap = cap
        self._counted = counted  # the figures' hash and field that count every letter added

    def add(self, letters: Iterable[tuple[str, Any]], *, count: bool = True) -> int:
        """Append ``(reason, event)`` pairs to the list; return how many.

        The list keeps the newest ``cap``: the oldest beyond are dropped, and counted
        (:meth:`dropped`), so one hostile request cannot fill the Redis. Each letter is counted
        as dead-lettered in the same transaction, unless ``count`` is false (letters put back
        as they were, which were counted when first added).
        """
        now = time.time()
        entries = [letter(now, reason, event) for reason, event in letters]
        if not entries:
            return 0
        cap = self._cap
        kept = entries[-cap:]
        pipe = self._redis.pipeline(transaction=True)
        pipe.rpush(self._key, *kept)
        pipe.ltrim(self._key, -cap, -1)
        if count:
            pipe.hincrby(*self._counted, len(entries))
        length = state_call(pipe.execute)[0]
        # Each transaction trims what it overflowed: the sum over writers is exact.
        dropped = len(entries) - len(kept) + max(0, int(length) - cap)
        if dropped:
            state_call(self._redis.incrby, self._dropped, dropped)
        return len(entries)

    def dropped(self) -> int:
        """How many dead letters the cap dropped, ever."""
        return int(state_call(self._redis.get, self._dropped) or 0)

    def read(self, start: int = 0, stop: int = -1) -> list[DeadLetter]:
        """Dead letters from ``start`` to ``stop`` (inclusive, as LRANGE), oldest first."""
        raw = state_call(self._redis.lrange, self._key, start, stop)
        return [DeadLetter(**json.loads(item)) for item in raw]

    def count(self) -> int:
        """How many dead letters wait."""
        return int(state_call(self._redis.llen, self._key))

    def pop(self, count: int) -> list[DeadLetter]:
        """Take up to ``count`` of the oldest dead letters off the list (for a replay)."""
        raw = state_call(self._redis.lpop, self._key, count) or []
        return [DeadLetter(**json.loads(item)) for item in raw]

    def purge(self) -> int:
        """Drop every dead letter; return how many there were."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.llen(self._key)
        pipe.delete(self._key)
        count, _ = state_call(pipe.execute)
        return int(count)
