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
"""

from __future__ import annotations

import logging
from typing import Final

from worker.cache import BlobDescriptorCache
from worker.errors import CacheError
from worker.state import StateStore

__all__ = ["DROP_SHARE", "REWARM_LOCK", "cache_emptied", "needs_rewarm", "note_cache_size"]

_log = logging.getLogger(__name__)

#: Under this share of the keys seen at the previous look, the cache was emptied.
DROP_SHARE: Final = 0.5
#: The name of the lock that keeps re-warms to one at a time across machines.
REWARM_LOCK: Final = "rewarm"


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


def note_cache_size(cache: BlobDescriptorCache, state: StateStore) -> None:
    """After a re-warm: remember what the cache holds, so that emptying it again soon after is
    seen as a drop (not as the empty cache the re-warm started from)."""
    try:
        state.set_cache_keys(cache.key_count())
    except CacheError as exc:  # the next look takes the count instead
        _log.warning("could not count the cache's keys: %s", exc)
