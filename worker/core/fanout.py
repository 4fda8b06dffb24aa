"""The fan-out re-warm's plan: the store cut into chunks of about the same work, streamed.

A task a repository made a store of 100,000 small repositories 100,000 tasks, each paying the
broker's and a cache round trip's cost for a link or two, and the chord over them held every
one in memory. A chunk is instead up to :data:`CHUNK_REPOSITORIES` repositories holding about
:data:`CHUNK_LINKS` links between them, re-warmed by one task as :func:`rewarm` walks several
repositories (their small ones share a batch); a large repository (:data:`LARGE_REPOSITORY`
links or more) is still 16 chunks, one a shard, so that it spreads over the workers.

The plan is a generator: its memory is a chunk's names and the recently pulled ones, whatever
the store's size, and the planner sends each chunk as soon as it is cut.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Final, NamedTuple

from worker.core.rewarm import LARGE_REPOSITORY, SHARDS
from worker.storage import Store

__all__ = ["CHUNK_LINKS", "CHUNK_REPOSITORIES", "Chunk", "plan"]

#: Links a chunk holds about (it closes once it reaches them): a few batches' worth, so that
#: a task's own cost (the broker, its result, the lock's refresh) is a few per cent of it.
CHUNK_LINKS: Final = 5_000
#: Repositories a chunk holds at most (one of a link each pays a listing each).
CHUNK_REPOSITORIES: Final = 1_000


class Chunk(NamedTuple):
    """One task's part of a re-warm: repositories, or one shard of one large repository."""

    names: list[str]
    #: A hex prefix ("" for whole repositories).
    shard: str = ""
    #: Links counted in the plan (up to ``large`` a repository).
    links: int = 0


def plan(
    store: Store,
    recently_pulled: list[str],
    *,
    large: int = LARGE_REPOSITORY,
    links: int = CHUNK_LINKS,
    repositories: int = CHUNK_REPOSITORIES,
) -> Iterator[Chunk]:
    """The fan-out's chunks, the recently pulled repositories first (they are wanted first),
    streamed as the store is walked.

    A repository's links are counted only up to ``large``, so planning costs a listing of each.
    """
    names: list[str] = []
    count = 0
    for name in _hot_first(store, recently_pulled):
        size = sum(1 for _ in islice(store.layers(name), large))
        if size >= large:
            yield from (Chunk([name], shard, size // len(SHARDS)) for shard in SHARDS)
            continue
        names.append(name)
        count += size
        if count >= links or len(names) >= repositories:
            yield Chunk(names, "", count)
            names, count = [], 0
    if names:
        yield Chunk(names, "", count)


def _hot_first(store: Store, recently_pulled: list[str]) -> Iterator[str]:
    # Every repository of the store, the recently pulled first (a bounded list, and all this
    # keeps). A pulled one gone from the store is not asked about here (up to 10,000 requests
    # on S3): its task finds it gone and counts it skipped.
    yield from recently_pulled
    seen = set(recently_pulled)
    yield from (name for name in store.repositories() if name not in seen)
