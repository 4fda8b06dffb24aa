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
from worker.storage.base import DEFAULT_MEMO_LIMIT

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MEMO_LIMIT",
    "LARGE_REPOSITORY",
    "SHARDS",
    "RewarmSummary",
    "rewarm",
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
    skip_missing: bool = False,
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

    A named repository that is not in the store raises RepositoryNotFoundError before anything
    is warmed; with ``skip_missing`` (a fan-out's task, planned before a delete) it is counted
    in ``skipped`` as the walk comes to it, and the others are warmed.
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
        for name in [] if skip_missing else names:
            if not store.has_repository(name):
                raise RepositoryNotFoundError(f"repository {name} is not in the store")
    summary = RewarmSummary()
    sizes: dict[str, int] = {}
    seen: dict[str, int] = {}  # sizes the store's listings showed (S3): bounded the same way
    started = time.perf_counter()
    requests = store.requests
    checks = _Checks(service.writer.holding(), summary, sizes)
    run = checks.service(service)
    # Without held re-checks, small repositories share a batch: one cache round trip each way
    # (and one of the journal) for many of them, where one each made the walk's cost a
    # repository's (100,000 repositories of one link: 4 round trips a link). Held, the writes
    # of one repository go together: the re-checks follow the walk's key ranges.
    walk = _Walk(
        run,
        summary,
        checks,
        size=batch_size,
        memo=(sizes, seen, memo_limit),
        report=lambda: _report(summary, started, on_progress),
    )
    walk.together = checks.held is None
    try:
        for name in names:
            if skip_missing and not store.has_repository(name):
                summary.skipped += int(shard in ("", SHARDS[0]))  # once, as a repository counts
                continue
            checks.moving_to(name, walked=repositories is None)
            for batch in _batched(store.layers(name, shard), batch_size):
                walk.add(name, batch, recheck_hits=recheck_hits)
            for batch in _batched(store.revisions(name, shard), batch_size):
                walk.add(name, batch, manifests=True, recheck_hits=recheck_hits)
            if shard in ("", SHARDS[0]):  # a sharded repository counts once, in its first shard
                summary.repositories += 1
            if not walk.together:
                walk.flush(recheck_hits=recheck_hits)
            summary.s3_requests = store.requests - requests
            _report(summary, started, on_progress)
        walk.flush(recheck_hits=recheck_hits)
        _report(summary, started, on_progress)
        checks.settle()
    except BaseException:  # Ctrl-C too: what was written is re-checked before leaving
        checks.abandon()
        raise
    summary.s3_requests = store.requests - requests
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


class _Walk:
    """A re-warm's batches: blob links and manifest revisions of one or (``together``) several
    repositories, up to ``size`` digests, each kind fetched in one go when full."""

    def __init__(
        self,
        run: CachedBlobService,
        summary: RewarmSummary,
        checks: _Checks,
        *,
        size: int,
        memo: tuple[dict[str, int], dict[str, int], int],
        report: Callable[[], None],
    ) -> None:
        self._run, self._summary, self._checks, self._size = run, summary, checks, size
        self._report = report
        self._sizes, self._seen, self._memo_limit = memo
        self.together = True
        self._layers: dict[str, list[str]] = {}
        self._manifests: dict[str, list[str]] = {}
        self._queued = {False: 0, True: 0}  # digests queued, by kind (manifests?)

    def add(
        self, name: str, batch: list[str], *, manifests: bool = False, recheck_hits: bool
    ) -> None:
        """Queue ``batch`` of ``name``; fetch the queue of its kind once it holds ``size``."""
        queue = self._manifests if manifests else self._layers
        queue.setdefault(name, []).extend(batch)
        self._queued[manifests] += len(batch)
        if self._queued[manifests] >= self._size:
            self._fetch(queue, manifests=manifests, recheck_hits=recheck_hits)

    def flush(self, *, recheck_hits: bool) -> None:
        """Fetch whatever is queued."""
        self._fetch(self._layers, manifests=False, recheck_hits=recheck_hits)
        self._fetch(self._manifests, manifests=True, recheck_hits=recheck_hits)

    def _fetch(self, queue: dict[str, list[str]], *, manifests: bool, recheck_hits: bool) -> None:
        if not queue:
            return
        # The run's memories are bounded: cleared when full (a later batch stats again).
        for memory in (self._sizes, self._seen):
            if len(memory) > self._memo_limit:
                memory.clear()
        groups = dict(queue)
        queue.clear()
        self._queued[manifests] = 0
        if manifests:
            found = self._run.fetch_manifest_groups(
                groups, strict=True, listed=self._seen, recheck_hits=recheck_hits
            )
        else:
            found = self._run.fetch_groups(
                groups,
                strict=True,
                sizes=self._sizes,
                listed=self._seen,
                recheck_hits=recheck_hits,
            )
        for name, results in found.items():
            self._summary._count(results, f"{name} (manifest)" if manifests else name)
            if manifests:
                self._summary.manifests += len(results)
            else:
                self._summary.blobs += len(results)
        self._checks.after_batch()
        self._report()


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
