"""Re-warm: walk the store and leave in the cache what the registry leaves after a full pull.

For every repository: each linked blob gets a cached fetch (membership, global descriptor and
repository media type), and each manifest revision what a pull leaves for it (3.x: the same as
a blob; 2.x: the global descriptor only, no membership). The walk streams in batches of
``batch_size``: one cache round trip reads a batch, one writes its misses, and memory does not
grow with the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from typing import Final, TypeVar

from worker.core.blobservice import CachedBlobService
from worker.core.results import FetchResult
from worker.core.writes import CacheWriter
from worker.errors import RepositoryNotFoundError
from worker.registry import reference
from worker.storage import Store
from worker.storage.base import DEFAULT_MEMO_LIMIT

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MEMO_LIMIT",
    "LARGE_REPOSITORY",
    "SHARDS",
    "RewarmSummary",
    "plan",
    "rewarm",
    "rewarm_order",
    "summarize",
]

#: Digests per cache round trip. Large enough that the round trip is noise, small enough that a
#: batch's script holds the cache Redis for about a millisecond.
DEFAULT_BATCH_SIZE: Final = 1000

_log = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(slots=True)
class RewarmSummary:
    """What a re-warm did. ``hits`` and ``misses`` cover blobs and manifests alike."""

    repositories: int = 0
    blobs: int = 0
    manifests: int = 0
    hits: int = 0
    misses: int = 0
    errors: int = 0
    #: Repositories planned but gone from the store by the time their task ran.
    skipped: int = 0
    #: Requests sent to S3 (0 on a filesystem): listings, and reads of what differs.
    s3_requests: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, int | float]:
        """The summary as a JSON-ready dict."""
        return asdict(self)

    def _count(self, results: list[FetchResult], where: str) -> None:
        for r in results:
            if r.hit:
                self.hits += 1
            else:
                self.misses += 1
            if r.error is not None:
                self.errors += 1
                _log.warning("%s: %s", where, r.error)


def rewarm(
    service: CachedBlobService,
    repositories: Iterable[str] | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    memo_limit: int = DEFAULT_MEMO_LIMIT,
    shard: str = "",
    on_progress: Callable[[RewarmSummary], None] | None = None,
    recheck_hits: bool = False,
) -> RewarmSummary:
    """Warm every repository of the store (or the ones named) and return what was done.

    A cache error aborts the run (raised as CacheError): writing is its whole purpose. Store
    errors (a link to data that garbage-collect removed) are counted and logged. ``shard`` (a
    hex prefix) warms only the digests whose hex starts with it (see :func:`plan`).

    Every entry written is checked against the store again after the write, and forgotten if a
    delete took it meanwhile (:mod:`worker.core.writes`); on S3 the checks of the writes that
    the walk listed together are done together, once the walk has left them (a blob found gone
    then counts as an error, its batch's hit or miss unchanged). ``recheck_hits``: the cache's
    hits are checked too, for a run retried after a try that died between a write and its
    check.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    store = service.store
    store.check()
    service.cache.ping()
    names: Iterable[str]
    if repositories is None:
        names = store.repositories()
    else:
        names = [reference.repository_name(n) for n in repositories]
        for name in names:
            if not store.has_repository(name):
                raise RepositoryNotFoundError(f"repository {name} is not in the store")
    summary = RewarmSummary()
    sizes: dict[str, int] = {}
    seen: dict[str, int] = {}  # sizes the store's listings showed (S3): bounded the same way
    started = time.perf_counter()
    requests = store.requests
    checks = _Checks(service.writer.holding(), summary, sizes)
    run = checks.service(service)
    try:
        for name in names:
            checks.moving_to(name, walked=repositories is None)
            for batch in _batched(store.layers(name, shard), batch_size):
                if len(sizes) > memo_limit:
                    sizes.clear()
                if len(seen) > memo_limit:
                    seen.clear()
                results = run.fetch_many(
                    name, batch, strict=True, sizes=sizes, listed=seen, recheck_hits=recheck_hits
                )
                summary._count(results, name)
                summary.blobs += len(batch)
                checks.after_batch()
                _report(summary, started, on_progress)
            for batch in _batched(store.revisions(name, shard), batch_size):
                results = run.fetch_manifests(
                    name, batch, strict=True, listed=seen, recheck_hits=recheck_hits
                )
                summary._count(results, f"{name} (manifest)")
                summary.manifests += len(batch)
                checks.after_batch()
                _report(summary, started, on_progress)
            if shard in ("", SHARDS[0]):  # a sharded repository counts once, in its first shard
                summary.repositories += 1
            summary.s3_requests = store.requests - requests
            _report(summary, started, on_progress)
        checks.settle()
    except BaseException:  # Ctrl-C too: what was written is re-checked before leaving
        checks.abandon()
        raise
    summary.s3_requests = store.requests - requests
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


@dataclass(slots=True)
class _Checks:
    """A run's held re-checks (``held``: a holding writer; None: each write checked at once),
    settled into its summary.

    On S3 the re-checks of the writes wait while the walk stays in the key range it listed
    them in together, and past it until half a bound's worth waits; then one listing of each
    range, made afresh, re-checks them all (:meth:`CacheWriter.holding`); at the latest when
    :meth:`CacheWriter.due` says so.
    """

    held: CacheWriter | None
    summary: RewarmSummary
    sizes: dict[str, int]

    def service(self, service: CachedBlobService) -> CachedBlobService:
        """``service``, or the same with the holding writer."""
        if self.held is None:
            return service
        run = CachedBlobService(service.cache, service.store, service.figures)
        run.writer = self.held
        return run

    def moving_to(self, name: str, *, walked: bool) -> None:
        """The run goes on to ``name``: settle first what it was listed apart from."""
        if self.held is not None and self.held.moving_to(name, walked=walked):
            self.settle()

    def after_batch(self) -> None:
        """Settle when too much waits, wherever the walk is."""
        if self.held is not None and self.held.due():
            self.settle()

    def settle(self) -> None:
        """Re-check what waits. Found gone, or not answered (the write undone): counted as
        errors, as in their batch; the run's memory forgets them, so that a later batch that
        meets them writes their descriptor again."""
        if self.held is None:
            return
        found = self.held.settle()
        for repository, gone in found.gone:
            _log.warning("%s: %d blobs deleted while they were warmed", repository, len(gone))
            self._failed(gone)
        for repository, digests, error in found.failed:
            _log.warning("%s: %s", repository, error)
            self._failed(digests)

    def abandon(self) -> None:
        """The run failed: its writes so far are re-checked all the same. What cannot be (the
        cache or the store away) keeps its notes, for the sweep; the run's own error wins."""
        try:
            self.settle()
        except Exception as exc:  # any: the error to raise is the run's
            _log.warning("held re-checks left to the sweep: %s", exc)

    def _failed(self, digests: Iterable[str]) -> None:
        for d in digests:
            self.summary.errors += 1
            self.sizes.pop(d, None)


def _report(
    summary: RewarmSummary, started: float, on_progress: Callable[[RewarmSummary], None] | None
) -> None:
    if on_progress is not None:
        summary.seconds = time.perf_counter() - started
        on_progress(summary)


def _batched(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


#: The hex prefixes a large repository is split by: 16 even parts.
SHARDS: Final = tuple(reference.HEX_DIGITS)
#: Links from which a repository is re-warmed as 16 tasks rather than one.
LARGE_REPOSITORY: Final = 10_000


def plan(
    store: Store, recently_pulled: list[str], large: int = LARGE_REPOSITORY
) -> list[tuple[str, str]]:
    """The fan-out's tasks, ``(repository, shard)``: one a repository, 16 a large one.

    A repository's links are counted only up to ``large``, so planning costs little.
    """
    tasks: list[tuple[str, str]] = []
    for name in rewarm_order(store, recently_pulled):
        if sum(1 for _ in islice(store.layers(name), large)) >= large:
            tasks += [(name, shard) for shard in SHARDS]
        else:
            tasks.append((name, ""))
    return tasks


def rewarm_order(store: Store, recently_pulled: list[str]) -> list[str]:
    """Every repository of the store, the recently pulled ones first (they are wanted first).

    A list of names (not of blobs): one entry a repository, for the fan-out's task per
    repository.
    """
    hot = [name for name in recently_pulled if store.has_repository(name)]
    seen = set(hot)
    return hot + [name for name in store.repositories() if name not in seen]


def summarize(parts: list[dict[str, int | float]]) -> dict[str, int | float]:
    """One summary from the summaries of a fan-out's tasks (seconds: the longest)."""
    total = RewarmSummary().as_dict()
    for part in parts:
        for key, value in part.items():
            if key == "seconds":
                total[key] = max(total[key], value)
            elif key in total:
                total[key] += value
    return total
