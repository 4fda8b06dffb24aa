"""Reconcile: evict what the cache says and the store no longer holds.

After a delete or a ``garbage-collect`` the registry keeps answering from stale entries (a HEAD
of a deleted layer answers 200). Reconcile walks what is cached, not the store: each
repository's membership set against the repository's links and the blob data, then every
global descriptor against the blob data; what is gone is evicted, what is live is left alone.
It streams (SCAN, batches of ``batch``), so memory stays flat however large the cache is.

It is the audit (:mod:`worker.core.audit`) with its stale entries forgotten, told in the words
reconcile's summary has always used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from worker.cache import BlobDescriptorCache
from worker.core.audit import AuditSummary, Repair, audit
from worker.storage import Store

__all__ = ["ReconcileSummary", "reconcile"]


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

    def told(found: AuditSummary) -> ReconcileSummary:
        return ReconcileSummary(
            repositories=found.repositories,
            members=found.members,
            evicted_members=found.stale_members + found.unstored_members,
            descriptors=found.descriptors,
            evicted_descriptors=found.stale_descriptors,
            skipped=found.skipped,
            errors=found.errors,
            s3_requests=found.store_requests,
            dry_run=dry_run,
            seconds=found.seconds,
        )

    found = audit(
        cache,
        store,
        repair=Repair.NONE if dry_run else Repair.STALE,
        batch=batch,
        on_progress=(lambda s: on_progress(told(s))) if on_progress else None,
    )
    return told(found)
