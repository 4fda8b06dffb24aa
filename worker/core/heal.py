"""The cache heals itself: a cache emptied or restarted while the warmer runs is re-warmed.

The registry's cache Redis usually keeps nothing on disk and evicts (``allkeys-lru``), and
Harbor's garbage-collect deletes every ``blobs::*`` and ``repository::*`` key. Waiting for the
nightly re-warm would leave every first pull missing until then. So a beat task looks at the
cache's key count every ``WARMER_CACHE_CHECK_INTERVAL`` seconds and compares it with the count
it saw last time (kept in the state Redis, so any worker can take the next look): empty where
it held keys, or under half of them, means emptied or restarted. A drop stays pending (the count
is not replaced by the low one) until a re-warm has run to its end and noted what it left. On a
Redis Cluster the count is the sum over every primary. The registry refills a little
on its own as pulls arrive, which is why a drop counts and not only an empty cache. Nothing is
written to the registry's DB to tell (it holds only the registry's keys).

A re-warm is idempotent, so a false alarm (a large legitimate delete) costs one walk; the
re-warm lock (``worker.state.store``) keeps it to one at a time across machines.

A heal re-warm that never runs to its end (a fan-out task that fails every time, a chord that
errors) leaves the drop pending; the next is then started only after a backoff that doubles
with each unconfirmed one: twice the check interval after the first, then four times, and so on
up to an hour (:data:`BACKOFF_CAP`; the nightly re-warm runs anyway). The count is kept in the
state Redis (:mod:`worker.state.healrewarms`), told in the watch's result and by
``warmer stats``, and forgotten once a re-warm confirms the drop or the drop is gone.
"""

from __future__ import annotations

import logging
from typing import Final, NamedTuple

from worker.cache import BlobDescriptorCache
from worker.errors import CacheError
from worker.state import StateStore

__all__ = [
    "BACKOFF_CAP",
    "DROP_SHARE",
    "REWARM_LOCK",
    "Heal",
    "cache_emptied",
    "heal",
    "needs_rewarm",
    "note_cache_size",
]

_log = logging.getLogger(__name__)

#: Under this share of the keys seen at the previous look, the cache was emptied.
DROP_SHARE: Final = 0.5
#: The name of the lock that keeps re-warms to one at a time across machines.
REWARM_LOCK: Final = "rewarm"
#: The longest wait between heal re-warms that keep failing, in seconds.
BACKOFF_CAP: Final = 3600.0


def cache_emptied(cache: BlobDescriptorCache, state: StateStore) -> bool:
    """Look at the cache once; True when it was emptied or restarted and no re-warm has
    confirmed the drop since.

    A drop is not remembered as the new count: it stays visible to every later look until a
    re-warm has run to its end and :func:`note_cache_size` takes the count it left. A re-warm
    that dies (its lock expires) is therefore followed by another, not forgotten.
    """
    count = cache.key_count()
    previous = state.cache_keys()
    if previous is None:  # the first look ever: an empty cache is a new or flushed one
        dropped = count == 0
    elif count == 0:
        dropped = previous > 0  # an empty store stays empty: no re-warm every check
    else:
        dropped = count < previous * DROP_SHARE
    if not dropped:
        state.set_cache_keys(count)
    return dropped


def needs_rewarm(cache: BlobDescriptorCache, state: StateStore) -> bool:
    """True when a re-warm should start now because the cache was emptied or restarted.

    While a re-warm holds the lock the cache is not looked at: the count it saw last stays, so
    if that re-warm's holder died, the drop is still seen once its lock has expired.
    """
    if state.lock_holder(REWARM_LOCK) is not None:
        return False
    return cache_emptied(cache, state)


class Heal(NamedTuple):
    """One look of the cache watch: what it saw and did."""

    #: A drop of the cache is pending (emptied or restarted, no re-warm confirmed it yet).
    emptied: bool = False
    #: A heal re-warm is to start now.
    rewarm: bool = False
    #: Heal re-warms started since a re-warm last confirmed a drop (this look's included; one
    #: may still run): past the first, each one before it never ran to its end.
    unconfirmed: int = 0
    #: Seconds before another heal re-warm may start (0: no drop is pending).
    wait: float = 0.0

    def as_dict(self) -> dict[str, bool | int | float]:
        """For the watch task's result."""
        return {
            "emptied": self.emptied,
            "rewarm": self.rewarm,
            "unconfirmed": self.unconfirmed,
            "next_rewarm_in": round(self.wait, 1),
        }


def heal(
    cache: BlobDescriptorCache,
    state: StateStore,
    *,
    now: float,
    interval: float,
    cap: float = BACKOFF_CAP,
) -> Heal:
    """Look at the cache once, and say whether a heal re-warm starts now.

    A drop starts one at once; while the drop stays pending (no re-warm ran to its end), the
    n-th unconfirmed heal re-warm is followed by the next only ``min(cap, interval * 2**n)``
    seconds after it started. The caller starts the re-warm when told to (the start is already
    counted). While a re-warm holds the lock, the cache is not looked at.
    """
    record = state.heal_rewarms
    if state.lock_holder(REWARM_LOCK) is not None:
        return Heal(unconfirmed=record.read().attempts)
    if not cache_emptied(cache, state):
        if record.read().attempts:
            record.confirm()  # the drop is gone (refilled): nothing to back off from
        return Heal()
    started, unconfirmed = record.claim(now, base=interval, cap=cap)
    wait = max(0.0, unconfirmed.next_at - now)  # started: the wait should this one fail too
    return Heal(emptied=True, rewarm=started, unconfirmed=unconfirmed.attempts, wait=wait)


def note_cache_size(cache: BlobDescriptorCache, state: StateStore) -> None:
    """After a re-warm: remember what the cache holds, so that emptying it again soon after is
    seen as a drop (not as the empty cache the re-warm started from); a pending drop is
    confirmed, and the heal's backoff forgotten."""
    try:
        state.set_cache_keys(cache.key_count())
    except CacheError as exc:  # the next look takes the count instead
        _log.warning("could not count the cache's keys: %s", exc)
        return
    state.heal_rewarms.confirm()
