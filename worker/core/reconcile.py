"""Reconcile: evict what the cache says and the store no longer holds.

After a delete or a ``garbage-collect`` the registry keeps answering from stale entries (a HEAD
of a deleted layer answers 200). Reconcile walks what is cached, not the store: each
repository's membership set against the repository's links and the blob data, then every
global descriptor against the blob data; what is gone is evicted, what is live is left alone.
It streams (SCAN, batches of ``batch``), so memory stays flat however large the cache is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from worker.cache import BlobDescriptorCache
from worker.core.rewarm import DEFAULT_MEMO_LIMIT
from worker.errors import BlobNotFoundError, InvalidReferenceError, StoreError
from worker.registry import reference
from worker.registry.descriptor import Descriptor
from worker.storage import Store

__all__ = ["ReconcileSummary", "reconcile"]

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class ReconcileSummary:
    """What a reconcile found and (unless ``dry_run``) evicted."""

    repositories: int = 0
    members: int = 0
    evicted_members: int = 0
    descriptors: int = 0
    evicted_descriptors: int = 0
    skipped: int = 0
    #: Entries the store could not answer for (an error other than "not there"): left alone.
    errors: int = 0
    #: Requests sent to S3 (0 on a filesystem): listings for large batches, else a link read
    #: and a HEAD per cached member.
    s3_requests: int = 0
    dry_run: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, int | float | bool]:
        """JSON-ready."""
        return asdict(self)


def reconcile(
    cache: BlobDescriptorCache,
    store: Store,
    *,
    dry_run: bool = False,
    batch: int = 1000,
    on_progress: Callable[[ReconcileSummary], None] | None = None,
) -> ReconcileSummary:
    """Evict cached entries whose link or data is gone from the store; return what was done."""
    store.check()
    cache.ping()
    summary = ReconcileSummary(dry_run=dry_run)
    started = time.perf_counter()
    requests = store.requests
    seen: dict[str, int] = {}  # sizes the store's listings showed (S3), bounded as a re-warm's
    for repository in cache.repositories(batch):
        try:
            reference.repository_name(repository)
        except InvalidReferenceError as exc:
            _log.warning("skipping cached repository %r: %s", repository, exc)
            summary.skipped += 1
            continue
        summary.repositories += 1
        for digests in cache.members(repository, batch):
            valid = _valid(digests, summary)
            _bound(seen)
            # Registry 3.x keeps manifests as members too: a member is live through either link.
            found = store.fetch_cached(
                repository, valid, manifests=cache.version.manifests_are_members, seen=seen
            )
            gone = _judged(valid, found, summary)
            summary.members += len(digests)
            summary.evicted_members += len(gone)
            if gone and not dry_run:
                cache.clear_many(gone, repository)
            if on_progress:
                on_progress(summary)
    for digests in cache.described(batch):
        valid = _valid(digests, summary)
        _bound(seen)
        found = store.fetch_cached(None, valid, seen=seen)
        gone = _judged(valid, found, summary)
        summary.descriptors += len(digests)
        summary.evicted_descriptors += len(gone)
        if gone and not dry_run:
            cache.clear_many(gone)
        if on_progress:
            on_progress(summary)
    summary.s3_requests = store.requests - requests
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _valid(digests: list[str], summary: ReconcileSummary) -> list[str]:
    # A member that is not a digest was not written by a registry: not ours to judge, left.
    valid = []
    for d in digests:
        try:
            valid.append(reference.digest(d))
        except InvalidReferenceError:
            summary.skipped += 1
    return valid


def _judged(
    digests: list[str], found: list[Descriptor | StoreError], summary: ReconcileSummary
) -> list[str]:
    # The digests the store says are gone; an error says nothing, so its entry stays.
    gone = []
    for d, f in zip(digests, found, strict=True):
        if isinstance(f, BlobNotFoundError):
            gone.append(d)
        elif isinstance(f, StoreError):
            summary.errors += 1
            _log.warning("left %s in the cache: %s", d, f)
    return gone


def _bound(seen: dict[str, int]) -> None:
    if len(seen) > DEFAULT_MEMO_LIMIT:
        seen.clear()
