"""Which repositories were pulled, how often and when: the sums the receiver adds up, kept for
the hot-first re-warm (a heal after a flush warms what was pulled in the last hour first) and
the audit's budget (store requests earned by pulls). Its keys are spelled in
:mod:`worker.state.store`, which hands its callers these methods.

Bounded: the newest :data:`MAX_REPOSITORIES` repositories are kept; the pull count of one
dropped from the access times goes with it (the total stays).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Final

import redis

from worker.state.redisio import state_call, text

__all__ = ["HOT_WINDOW_SECONDS", "MAX_HOT", "MAX_REPOSITORIES", "PullRecords"]

#: Repositories whose pulls are kept (the most recently pulled): far more than a heal's hot list.
MAX_REPOSITORIES: Final = 100_000
#: What a heal warms first: the repositories pulled within this many seconds, newest first ...
HOT_WINDOW_SECONDS: Final = 3600.0
#: ... at most this many of them (a fan-out's plan holds them in memory).
MAX_HOT: Final = 10_000


#: The most repositories one call drops over the cap: a bounded command, even on a key that grew
#: without a cap before (it shrinks to the cap over several calls).
_TRIM_PER_CALL: Final = 5_000  # and under Lua's unpack limit (8,000)

# KEYS: access times, pull counts, total. ARGV: the time, the cap, the most to drop, then
# repository and count pairs. Every pair's time is noted, its count added (a count of 0: only
# noted); then the least recently pulled over the cap go, with their counts.
_ADD_LUA: Final = """
local total = 0
for i = 4, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i])
  local count = tonumber(ARGV[i + 1])
  if count ~= 0 then
    redis.call('HINCRBY', KEYS[2], ARGV[i], count)
    total = total + count
  end
end
if total ~= 0 then redis.call('INCRBY', KEYS[3], total) end
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[2])
if over > 0 then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, math.min(over, tonumber(ARGV[3])) - 1)
  redis.call('ZREM', KEYS[1], unpack(oldest))
  redis.call('HDEL', KEYS[2], unpack(oldest))
end
return 0
"""


class PullRecords:
    """Pulls per repository, their total, and each repository's last pull."""

    def __init__(self, client: redis.Redis, *, access: str, pulls: str, total: str) -> None:
        self._redis = client
        self._access, self._pulls, self._total = access, pulls, total
        self._add = client.register_script(_ADD_LUA)

    def touch(self, repositories: Iterable[str], at: float) -> None:
        """Note that these repositories were pulled at ``at``."""
        self.add(dict.fromkeys(repositories, 0), at)

    def add(self, pulls: Mapping[str, int], at: float) -> None:
        """Add up pulls per repository (the receiver's sums), and note when: one round trip,
        atomic with the cap (two receivers at once never drop a repository just pulled)."""
        if not pulls:
            return
        args: list[str | int | float] = [at, MAX_REPOSITORIES, _TRIM_PER_CALL]
        for repository, count in pulls.items():
            args += [repository, count]
        state_call(self._add, [self._access, self._pulls, self._total], args)

    def total(self) -> int:
        """Pulls counted, of every repository."""
        return int(state_call(self._redis.get, self._total) or 0)

    def count(self, repository: str) -> int:
        """Pulls counted for ``repository``."""
        return int(state_call(self._redis.hget, self._pulls, repository) or 0)

    def recent(
        self, limit: int = MAX_HOT, within: float = HOT_WINDOW_SECONDS, now: float | None = None
    ) -> list[str]:
        """Repositories pulled in the last ``within`` seconds, newest first, at most ``limit``."""
        since = (time.time() if now is None else now) - within
        raw = state_call(self._redis.zrevrangebyscore, self._access, "+inf", since, 0, limit)
        return [text(r) for r in raw]
