"""Heal re-warms not yet confirmed: what lets the cache watch back off when its re-warms keep
failing.

The cache watch (:mod:`worker.core.heal`) keeps a drop of the cache pending until a re-warm has
run to its end. A re-warm that never does (a fan-out task that fails every time, a chord that
errors) would otherwise be followed by another at every look, for ever. So each heal re-warm is
counted here when it starts, with the earliest time the next may start; a re-warm that runs to
its end (or a drop no longer seen) deletes the record.

One hash, ``warmer:heal`` (spelled in :mod:`worker.state.store`):

    attempts  heal re-warms started since the drop was last confirmed
    started   when the last of them started (unix time)
    next      no heal re-warm starts before this time (unix time)

Its size is fixed (three fields), and it expires a day after the last start.
"""

from __future__ import annotations

from typing import Final, NamedTuple

import redis

from worker.state.redisio import state_call

__all__ = ["HealRewarms", "Unconfirmed"]

_TTL_SECONDS: Final = 86_400

# Atomic: two looks at once (a backlog of watch tasks run side by side) start one re-warm, and
# count it once. Times travel as strings: Redis truncates a Lua number to an integer.
_CLAIM_LUA: Final = """
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
local next_at = tonumber(redis.call('HGET', KEYS[1], 'next') or '0')
local now = tonumber(ARGV[1])
if now < next_at then
  return {0, attempts, tostring(next_at)}
end
attempts = attempts + 1
next_at = now + math.min(tonumber(ARGV[3]), tonumber(ARGV[2]) * 2 ^ attempts)
redis.call('HSET', KEYS[1], 'attempts', attempts, 'started', ARGV[1], 'next', tostring(next_at))
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {1, attempts, tostring(next_at)}
"""


class Unconfirmed(NamedTuple):
    """Heal re-warms started and not confirmed, and when the next may start."""

    attempts: int = 0
    next_at: float = 0.0


class HealRewarms:
    """The record of unconfirmed heal re-warms, in the state Redis."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._redis = client
        self._key = key
        self._claim = client.register_script(_CLAIM_LUA)

    def claim(self, now: float, *, base: float, cap: float) -> tuple[bool, Unconfirmed]:
        """Start a heal re-warm at ``now`` unless the backoff says wait; say whether.

        After the n-th unconfirmed start the next waits ``min(cap, base * 2**n)`` seconds.
        """
        started, attempts, next_at = state_call(
            self._claim, [self._key], [repr(now), repr(base), repr(cap), _TTL_SECONDS]
        )
        return bool(started), Unconfirmed(int(attempts), float(next_at))

    def read(self) -> Unconfirmed:
        """The unconfirmed heal re-warms (none: zero)."""
        attempts, next_at = state_call(self._redis.hmget, self._key, ["attempts", "next"])
        if attempts is None:
            return Unconfirmed()
        return Unconfirmed(int(attempts), float(next_at or 0))

    def confirm(self) -> None:
        """A re-warm ran to its end, or the drop is gone: no backoff any more."""
        state_call(self._redis.delete, self._key)
