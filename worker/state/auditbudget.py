"""The continuous audit's budget of store requests, and what the audit found so far.

The audit (``warmer.audit``, a beat job) checks a random sample of the cache against the store.
Store requests cost money on S3, so it spends only what pulls earn: a share of the pulls the
receiver counted since the last grant (``WARMER_AUDIT_REQUESTS_PER_1000_PULLS``), never more
than a run's cap (``WARMER_AUDIT_REQUESTS_PER_MINUTE``, scaled to the run's interval). Credit
left unspent stays for the next run, up to that cap; an idle registry earns nothing, so its
store is not read at all.

One hash, ``warmer:audit`` (spelled in :mod:`worker.state.store`), holds the grant's memory
and the totals:

    pulls     the pulls counted at the last grant
    credit    store requests granted and not yet spent (a float: 1 per 1,000 pulls accrues)
    checked   entries the audit checked, in all
    found     entries found stale or wrong
    repaired  entries forgotten or rewritten
    requests  store requests the audit spent

Its size is fixed (six fields), and it expires a week after the last run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import redis

from worker.state.redisio import state_call

__all__ = ["FIGURES", "AuditBudget"]

#: The totals the hash keeps, as task results, `warmer stats` and /metrics name them.
FIGURES: Final = ("checked", "found", "repaired", "requests")
_TTL_SECONDS: Final = 7 * 86_400

# Atomic, and the grant taken off the credit at once: two runs at the same time (two beats by
# mistake) never spend the same pulls or the same credit twice.
_GRANT_LUA: Final = """
local total = tonumber(ARGV[1])
local last = tonumber(redis.call('HGET', KEYS[1], 'pulls') or ARGV[1])
local credit = tonumber(redis.call('HGET', KEYS[1], 'credit') or '0')
local earned = math.max(0, total - last) * tonumber(ARGV[2]) / 1000
credit = math.min(tonumber(ARGV[3]), credit + earned)
local granted = math.max(0, math.floor(credit))
redis.call('HSET', KEYS[1], 'pulls', ARGV[1], 'credit', tostring(credit - granted))
redis.call('EXPIRE', KEYS[1], ARGV[4])
return granted
"""


class AuditBudget:
    """The audit's grant of store requests and its totals, in the state Redis."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._redis = client
        self._key = key

    def grant(self, pulls: int, per_1000_pulls: float, cap: float) -> int:
        """Credit what ``pulls`` (the receiver's count, in all) earned since the last grant;
        return the whole store requests this run may spend (at most ``cap``), taken off the
        credit now (:meth:`spend` gives back what the run left).

        The first grant ever earns nothing from the pulls counted before it.
        """
        script = self._redis.register_script(_GRANT_LUA)
        return int(state_call(script, [self._key], [pulls, per_1000_pulls, cap, _TTL_SECONDS]))

    def spend(self, granted: int, requests: int, figures: Mapping[str, int]) -> None:
        """Give back what a run left of its grant (or take what it spent past it), and add its
        ``figures`` to the totals. A run that fails before this keeps its whole grant spent."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.hincrbyfloat(self._key, "credit", granted - requests)
        for name in FIGURES:
            if figures.get(name):
                pipe.hincrby(self._key, name, figures[name])
        pipe.expire(self._key, _TTL_SECONDS)
        state_call(pipe.execute)

    def totals(self) -> dict[str, int]:
        """The totals so far (zeros before the first run)."""
        raw = state_call(self._redis.hmget, self._key, list(FIGURES))
        return {name: int(value or 0) for name, value in zip(FIGURES, raw, strict=True)}
