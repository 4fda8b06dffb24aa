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
from typing import Any, Final

import redis

from worker.errors import StateError

__all__ = ["HOT_WINDOW_SECONDS", "MAX_HOT", "MAX_REPOSITORIES", "PullRecords"]

#: Repositories whose pulls are kept (the most recently pulled): far more than a heal's hot list.
MAX_REPOSITORIES: Final = 100_000
#: What a heal warms first: the repositories pulled within this many seconds, newest first ...
HOT_WINDOW_SECONDS: Final = 3600.0
#: ... at most this many of them (a fan-out's plan holds them in memory).
MAX_HOT: Final = 10_000


class PullRecords:
    """Pulls per repository, their total, and each repository's last pull."""

    def __init__(self, client: redis.Redis, *, access: str, pulls: str, total: str) -> None:
        self._redis = client
        self._access, self._pulls, self._total = access, pulls, total

    def touch(self, repositories: Iterable[str], at: float) -> None:
        """Note that these repositories were pulled at ``at``."""
        self.add(dict.fromkeys(repositories, 0), at)

    def add(self, pulls: Mapping[str, int], at: float) -> None:
        """Add up pulls per repository (the receiver's sums), and note when: one round trip
        (two when the cap drops the oldest)."""
        if not pulls:
            return
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(self._access, dict.fromkeys(pulls, at))
        for repository, count in pulls.items():
            if count:
                pipe.hincrby(self._pulls, repository, count)
        if total := sum(pulls.values()):
            pipe.incrby(self._total, total)
        pipe.zrange(self._access, 0, -MAX_REPOSITORIES - 1)
        oldest = self._call(pipe.execute)[-1]
        if oldest:  # over the cap: the least recently pulled go, with their counts
            pipe = self._redis.pipeline(transaction=False)
            pipe.zrem(self._access, *oldest)
            pipe.hdel(self._pulls, *oldest)
            self._call(pipe.execute)

    def total(self) -> int:
        """Pulls counted, of every repository."""
        return int(self._call(self._redis.get, self._total) or 0)

    def count(self, repository: str) -> int:
        """Pulls counted for ``repository``."""
        return int(self._call(self._redis.hget, self._pulls, repository) or 0)

    def recent(
        self, limit: int = MAX_HOT, within: float = HOT_WINDOW_SECONDS, now: float | None = None
    ) -> list[str]:
        """Repositories pulled in the last ``within`` seconds, newest first, at most ``limit``."""
        since = (time.time() if now is None else now) - within
        raw = self._call(self._redis.zrevrangebyscore, self._access, "+inf", since, 0, limit)
        return [r.decode() if isinstance(r, bytes) else str(r) for r in raw]

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except redis.RedisError as exc:
            raise StateError(f"state Redis: {exc}") from exc
