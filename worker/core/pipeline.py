"""What a batch of registry events does to the cache: plain functions, no Celery.

A task hands :func:`process` a batch; it returns figures and the events that failed, split in
two: ``retry`` (Redis or storage trouble, or a manifest not readable yet: worth another try
later) and ``dead`` (will never work: for the dead-letter list). Whatever one event raises,
only that event fails, with its reason; the rest of the batch is processed. Every write is
idempotent, so a batch processed twice (a redelivery after a worker died) leaves the same cache.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from worker.core.blobservice import CachedBlobService
from worker.core.images import follow, warm_parts
from worker.core.results import FetchResult
from worker.errors import (
    BlobNotFoundError,
    CacheError,
    ManifestNotReadyError,
    StateError,
    WarmerError,
)
from worker.registry.events import Event, Kind
from worker.registry.manifest import Manifest
from worker.state import StateStore
from worker.state.figures import Figures

__all__ = ["MANIFEST_WAIT_SECONDS", "BatchResult", "process"]

_log = logging.getLogger(__name__)

#: How long a manifest push waits for the manifest to be readable: the registry can notify
#: before its storage shows the revision. Past this the event is retried later.
MANIFEST_WAIT_SECONDS: Final = 2.0
_FIRST_DELAY: Final = 0.02


@dataclass(slots=True)
class BatchResult:
    """What a batch did, in all and per repository, and what failed; ``push_to_warm`` holds,
    for each manifest push warmed, the seconds from the registry's timestamp of the push to the
    moment its blobs were in the cache (below 0 when the clocks disagree)."""

    figures: Figures = field(default_factory=Figures)
    accessed: int = 0
    ignored: int = 0
    repositories: dict[str, Figures] = field(default_factory=dict)
    retry: list[tuple[Event, str]] = field(default_factory=list)
    dead: list[tuple[Event, str]] = field(default_factory=list)
    push_to_warm: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for a task's result: the figures, failures by reason."""
        return {
            **self.figures.lookups(),
            "warmed": self.figures.warmed,
            "evicted": self.figures.evicted,
            "accessed": self.accessed,
            "ignored": self.ignored,
            "retry": len(self.retry),
            "dead": len(self.dead),
        }


def process(
    events: Sequence[Event],
    service: CachedBlobService,
    state: StateStore,
    *,
    manifest_wait: float = MANIFEST_WAIT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchResult:
    """Apply a batch of events to the cache; never raises for one event's trouble."""
    # The batch's lookups count in the service's own tallies too (a caller may read them there);
    # what it warmed and evicted is this batch's alone.
    result = BatchResult(figures=Figures(service.figures.exists, service.figures.fetch))
    groups: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        if event.kind is not Kind.ACCESS:
            groups[event.repository].append(event)
    # Each repository's figures are its own.
    figures = {repository: Figures() for repository in groups}
    # Blob pushes first, every repository's at once: one cache read and one write a batch.
    pushes = {r: [e for e in group if e.kind is Kind.WARM_BLOB] for r, group in groups.items()}
    _warm_blob_groups(service, {r: g for r, g in pushes.items() if g}, result, figures)
    for repository, group in groups.items():
        scoped = CachedBlobService(
            service.cache, service.store, figures[repository], service.writer.journal
        )
        _process_repository(
            scoped,
            group,
            result=result,
            figures=figures[repository],
            manifest_wait=manifest_wait,
            sleep=sleep,
        )
        result.repositories[repository] = figures[repository]
        result.figures.add(figures[repository])
    # Pulls reach a task only from a receiver older than the one that adds them up itself.
    accesses = [e for e in events if e.kind is Kind.ACCESS]
    if accesses:
        try:
            state.record_access(e.repository for e in accesses)
            result.accessed += len(accesses)
        except StateError as exc:
            result.retry.extend((e, str(exc)) for e in accesses)
    return result


def _fail(result: BatchResult, event: Event, exc: BaseException) -> None:
    # Another try later only for what can come back (Redis, storage I/O); anything else, known
    # (not found, invalid) or not (a bug, input Python refuses), is this event's alone: dead.
    if isinstance(exc, WarmerError):
        (result.retry if exc.retryable else result.dead).append((event, str(exc)))
    else:
        _log.exception("event %s failed", event.id)
        result.dead.append((event, f"{type(exc).__name__}: {exc}"[:500]))


def _process_repository(
    service: CachedBlobService,
    group: list[Event],
    *,
    result: BatchResult,
    figures: Figures,
    manifest_wait: float,
    sleep: Callable[[float], None],
) -> None:
    # Blob pushes are done already (_warm_blob_groups): the rest, in order.
    for event in group:
        try:
            if event.kind is Kind.WARM_MANIFEST:
                _warm_manifest(service, event, figures, manifest_wait, sleep)
                if event.pushed_at is not None:
                    result.push_to_warm.append(time.time() - event.pushed_at)
            elif event.kind is Kind.EVICT:
                assert event.digest is not None  # classify gives every evict a digest
                service.evict(event.repository, event.digest)
                figures.evicted += 1
            elif event.kind is Kind.IGNORE:
                result.ignored += 1
        except Exception as exc:  # one event's trouble, whatever it is, stays its own
            _fail(result, event, exc)


def _warm_blob_groups(
    service: CachedBlobService,
    groups: dict[str, list[Event]],
    result: BatchResult,
    figures: dict[str, Figures],
) -> None:
    if not groups:
        return
    digests = {r: list(dict.fromkeys(_digest(e) for e in group)) for r, group in groups.items()}
    try:
        fetched = service.warm_groups(digests, figures)
    except CacheError as exc:
        result.retry.extend((e, str(exc)) for group in groups.values() for e in group)
        return
    except Exception:
        # Something in the batch fails the whole fetch: a repository at a time, then an event
        # at a time, so only it fails. The failed try may have written entries and not checked
        # them all: the smaller tries re-check their hits too (as every warm does).
        for repository, group in groups.items():
            scoped = CachedBlobService(
                service.cache, service.store, figures[repository], service.writer.journal
            )
            try:
                _warm_blobs(scoped, repository, group, result, figures[repository])
            except Exception as exc:  # a group of one that failed: that event alone
                _fail(result, group[0], exc)
        return
    for repository, group in groups.items():
        _count(group, digests[repository], fetched[repository], result, figures[repository])


def _warm_blobs(
    service: CachedBlobService,
    repository: str,
    group: list[Event],
    result: BatchResult,
    figures: Figures,
) -> None:
    digests = list(dict.fromkeys(_digest(e) for e in group))
    try:
        fetched = service.warm_many(repository, digests)
    except CacheError as exc:
        result.retry.extend((e, str(exc)) for e in group)
        return
    except Exception:
        if len(group) == 1:
            raise
        for event in group:
            try:
                _warm_blobs(service, repository, [event], result, figures)
            except Exception as exc:
                _fail(result, event, exc)
        return
    _count(group, digests, fetched, result, figures)


def _count(
    group: list[Event],
    digests: list[str],
    fetched: list[FetchResult],
    result: BatchResult,
    figures: Figures,
) -> None:
    # Each push is one cached fetch; a blob pushed again in the same batch is fetched once,
    # and its repeats count as the hits they would be one after the other.
    figures.fetch.hit(len(group) - len(digests))
    outcomes = {r.digest: r for r in fetched}
    for event in group:
        outcome = outcomes[_digest(event)]
        if outcome.error is None:
            figures.warmed += 1
        else:
            # Not found (pushed, yet not in the store: deleted meanwhile) is dead at once.
            _fail(result, event, outcome.error)


def _digest(event: Event) -> str:
    assert event.digest is not None  # classify gives every push and evict a digest
    return event.digest


def _warm_manifest(
    service: CachedBlobService,
    event: Event,
    figures: Figures,
    wait: float,
    sleep: Callable[[float], None],
) -> None:
    assert event.digest is not None  # classify gives every push a digest
    repository = event.repository
    # The manifest and, for an index, every child: read as a pull would, then warmed.
    parts = follow(lambda d: _read_manifest(service, repository, d, wait, sleep), event.digest)
    warm_parts(service, repository, parts, figures)


def _read_manifest(
    service: CachedBlobService,
    repository: str,
    digest: str,
    wait: float,
    sleep: Callable[[float], None],
) -> Manifest:
    deadline = time.monotonic() + wait
    delay = _FIRST_DELAY
    while True:
        try:
            return service.store.manifest(repository, digest)
        except BlobNotFoundError as exc:
            if time.monotonic() + delay > deadline:
                # Pushed moments ago: the registry can notify before storage shows it.
                raise ManifestNotReadyError(str(exc)) from None
            if delay == _FIRST_DELAY:  # once a wait: it explains a slow task
                _log.info(
                    "manifest %s of %s is not in storage yet: waiting up to %g s",
                    digest,
                    repository,
                    wait,
                )
            sleep(delay)
            delay = min(delay * 2, 0.5)
