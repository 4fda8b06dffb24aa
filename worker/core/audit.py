"""The audit: what the cache says, checked against the store (``warmer fsck``, the continuous
``warmer.audit`` beat job, and reconcile).

Four findings, each an entry the registry would answer wrongly from:

    stale member       a membership whose link is gone (the data lives on): deleted content
                       served in that repository
    unstored member    a membership of a blob the store holds no data of: never pushed there,
                       or garbage-collected
    stale descriptor   a global descriptor whose data is gone
    wrong descriptor   a descriptor whose size or media type differ from the store's

The audit walks the cache, not the store: every membership set and every global descriptor in
batches (SCAN: memory stays flat, and on S3 a large batch is answered from listings, a few
requests for a thousand entries), or a random sample of entries (``sample``), within a budget
of store requests when one is given. ``repair`` decides what it changes: nothing, the stale
(reconcile: forgotten as the registry's own delete would), or also the wrong (forgotten, then
written again from the store's answer through :class:`~worker.core.writes.CacheWriter`, where
a delete always wins). An entry the store cannot answer for (an S3 503) is counted, never
judged. A member's descriptor is its repository's view (the global size, the repository's
media type): a wrong global one is counted there and again by the descriptor walk, unless a
repair wrote it anew in between.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Final

from worker.cache import BlobDescriptorCache
from worker.core.writes import CacheWriter
from worker.errors import BlobNotFoundError, InvalidReferenceError, StoreError
from worker.registry import reference
from worker.registry.descriptor import Descriptor
from worker.state.auditbudget import AuditBudget
from worker.storage import Store
from worker.storage.base import DEFAULT_MEMO_LIMIT

__all__ = [
    "DEFAULT_AUDIT_BATCH",
    "AuditSummary",
    "Repair",
    "audit",
    "audit_within_budget",
    "differs",
]

_log = logging.getLogger(__name__)

#: Entries a walk checks at a time: one cache read and (S3) a few listing pages a batch.
DEFAULT_AUDIT_BATCH: Final = 1000


class Repair(StrEnum):
    """What an audit changes in the cache."""

    NONE = "none"  # report only
    STALE = "stale"  # forget stale and unstored entries (reconcile)
    ALL = "all"  # forget those, and write wrong descriptors again from the store


@dataclass(slots=True)
class AuditSummary:
    """What an audit checked, found and repaired."""

    repositories: int = 0
    members: int = 0
    descriptors: int = 0
    stale_members: int = 0
    unstored_members: int = 0
    stale_descriptors: int = 0
    wrong_descriptors: int = 0
    #: Entries that are not a registry's (not a digest, or a repository name that is invalid).
    skipped: int = 0
    #: Entries the store could not answer for (an error other than "not there"): left alone.
    errors: int = 0
    repaired: int = 0
    #: Store requests spent (S3's; on a filesystem nothing is billed and this stays 0).
    store_requests: int = 0
    sampled: bool = False
    repair: str = Repair.NONE.value
    seconds: float = 0.0

    @property
    def checked(self) -> int:
        """Entries checked: memberships and global descriptors."""
        return self.members + self.descriptors

    @property
    def found(self) -> int:
        """Entries found stale or wrong."""
        return (
            self.stale_members
            + self.unstored_members
            + self.stale_descriptors
            + self.wrong_descriptors
        )

    def as_dict(self) -> dict[str, int | float | bool | str]:
        """JSON-ready, with the totals."""
        return {**asdict(self), "checked": self.checked, "found": self.found}


#: One batch of entries: a repository's members, or (``None``) global descriptors.
_Group = tuple[str | None, list[str]]


def audit(
    cache: BlobDescriptorCache,
    store: Store,
    writer: CacheWriter | None = None,
    *,
    repair: Repair = Repair.NONE,
    sample: int | None = None,
    budget: int | None = None,
    batch: int = DEFAULT_AUDIT_BATCH,
    on_progress: Callable[[AuditSummary], None] | None = None,
) -> AuditSummary:
    """Check the cache (all of it, or ``sample`` entries picked at random) against the store.

    ``budget``: stop before spending more store requests than this (an entry checked counts as
    one at least, so a filesystem's budget counts entries). Raise StoreUnavailableError or
    CacheError when either cannot be reached at the start; later errors of the store are
    counted per entry.
    """
    # The store's check is a request the audit spends: counted, so a budget includes it.
    started, requests = time.perf_counter(), store.requests
    store.check()
    cache.ping()
    writer = writer or CacheWriter(cache, store)
    summary = AuditSummary(sampled=sample is not None, repair=repair.value)
    seen: dict[str, int] = {}  # sizes the store's listings showed (S3), bounded as a re-warm's
    groups = (
        _sampled(cache, sample, summary, one_by_one=budget is not None)
        if sample is not None
        else _walked(cache, batch, summary)
    )
    for repository, digests in groups:
        spent = max(store.requests - requests, summary.checked)
        if budget is not None and spent >= budget:
            break
        if len(seen) > DEFAULT_MEMO_LIMIT:
            seen.clear()
        # A sample's entry is asked alone (link and data), never by listing a whole folder.
        group = (repository, digests)
        _check(cache, writer, group, summary, repair=repair, seen=None if sample else seen)
        if on_progress:
            on_progress(summary)
    summary.store_requests = store.requests - requests
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def audit_within_budget(
    cache: BlobDescriptorCache,
    store: Store,
    writer: CacheWriter,
    grants: AuditBudget,
    *,
    pulls: int,
    per_1000_pulls: float,
    cap: float,
) -> AuditSummary:
    """One look of the continuous audit: a random sample as large as the store requests that
    ``pulls`` (the receiver's count, in all) earned allow, at most ``cap``; stale entries
    forgotten and wrong ones written again. Its figures are added to the totals."""
    allowed = grants.grant(pulls, per_1000_pulls, cap)
    if allowed < 1:  # nothing earned: the store is not read at all
        return AuditSummary(sampled=True, repair=Repair.ALL.value)
    summary = audit(cache, store, writer, repair=Repair.ALL, sample=allowed, budget=allowed)
    spent = max(summary.store_requests, summary.checked)
    figures = {"checked": summary.checked, "found": summary.found, "repaired": summary.repaired}
    grants.spend(allowed, spent, {**figures, "requests": spent})
    return summary


def _walked(cache: BlobDescriptorCache, batch: int, summary: AuditSummary) -> Iterator[_Group]:
    for repository in cache.repositories(batch):
        if _name_is_invalid(repository, summary):
            continue
        summary.repositories += 1
        for digests in cache.members(repository, batch):
            yield repository, digests
    for digests in cache.described(batch):
        yield None, digests


def _sampled(
    cache: BlobDescriptorCache, count: int, summary: AuditSummary, *, one_by_one: bool
) -> Iterator[_Group]:
    picks = [
        (repository, digest)
        for repository, digest in cache.sample(count)
        if repository is None or not _name_is_invalid(repository, summary)
    ]
    summary.repositories = len({r for r, _ in picks if r is not None})
    if one_by_one:  # within a budget, checked between entries
        for repository, digest in picks:
            yield repository, [digest]
        return
    # Else a repository's picks together: the store asks for them on its threads.
    groups: dict[str | None, list[str]] = {}
    for repository, digest in picks:
        groups.setdefault(repository, []).append(digest)
    yield from groups.items()


def _name_is_invalid(repository: str, summary: AuditSummary) -> bool:
    try:
        reference.repository_name(repository)
    except InvalidReferenceError as exc:
        _log.warning("skipping cached repository %r: %s", repository, exc)
        summary.skipped += 1
        return True
    return False


def _check(
    cache: BlobDescriptorCache,
    writer: CacheWriter,
    group: _Group,
    summary: AuditSummary,
    *,
    repair: Repair,
    seen: dict[str, int] | None,
) -> None:
    repository, digests = group
    valid = _valid(digests, summary)
    store = writer.store
    # Registry 3.x keeps manifests as members too: a member is live through either link.
    manifests = repository is not None and cache.version.manifests_are_members
    answers = store.fetch_cached(repository, valid, manifests=manifests, seen=seen)
    cached = cache.stat_many(valid, repository)
    gone: list[str] = []
    collected: list[str] = []
    wrong: list[Descriptor] = []
    for digest, answer, entry in zip(valid, answers, cached, strict=True):
        if isinstance(answer, BlobNotFoundError):
            gone.append(digest)
        elif isinstance(answer, StoreError):
            summary.errors += 1
            _log.warning("could not check %s against the store: %s", digest, answer)
        elif entry is not None and differs(entry, answer):
            wrong.append(answer)
    summary.wrong_descriptors += len(wrong)
    if repository is None:
        summary.descriptors += len(digests)
        summary.stale_descriptors += len(gone)
    else:
        summary.members += len(digests)
        unstored = _unstored(store, gone, seen)
        collected = list(unstored)
        summary.unstored_members += len(unstored)
        summary.stale_members += len(gone) - len(unstored)
    if repair is Repair.NONE:
        return
    if gone:
        cache.clear_many(gone, repository)
        summary.repaired += len(gone)
        if repository is not None and collected:
            # Their data is gone: the global descriptor too (on 2.x a dangling link would let
            # the registry answer from it). Counted here, as the descriptor walk that follows
            # a whole audit no longer finds it (a look without repair counts it there).
            cache.clear_many(collected)
            summary.descriptors += len(collected)
            summary.stale_descriptors += len(collected)
            summary.repaired += len(collected)
    if wrong and repair is Repair.ALL:
        fixed = [d.digest for d in wrong]
        # The global media type is written only where absent (HSETNX, as the registry does):
        # a wrong one goes first, then the store's answer is written through the rule.
        cache.clear_many(fixed)
        if repository is not None:
            cache.clear_many(fixed, repository)
        writer.write(wrong, repository)
        summary.repaired += len(wrong)


def _unstored(store: Store, gone: list[str], seen: dict[str, int] | None) -> set[str]:
    # Of the members found gone: those whose data is gone too (not only their link).
    if not gone:
        return set()
    answers = store.fetch_cached(None, gone, seen=seen)
    return {d for d, a in zip(gone, answers, strict=True) if isinstance(a, BlobNotFoundError)}


def differs(cached: Descriptor, stored: Descriptor) -> bool:
    """True when a cached descriptor says other than the store's: size, media type or path."""
    if cached.size != stored.size or cached.media_type != stored.media_type:
        return True
    return cached.path is not None and stored.path is not None and cached.path != stored.path


def _valid(digests: list[str], summary: AuditSummary) -> list[str]:
    # A member that is not a digest was not written by a registry: not ours to judge, left.
    valid = []
    for d in digests:
        try:
            valid.append(reference.digest(d))
        except InvalidReferenceError:
            summary.skipped += 1
    return valid
