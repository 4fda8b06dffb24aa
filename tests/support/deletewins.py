"""The world of the delete-wins model (tests/integration/test_delete_wins_model.py): a registry
(``registrymodel``), its cache on real Redis, the worker that handles its events, and two
writers whose store reads can be hooked and whose cache writes can fail.

What the registry does comes with what it does to its cache (3.1's own clear on a delete) and
the events it sends; garbage-collect, which sends none and leaves the cache stale, is followed
by a reconcile. A writer (:meth:`World.run`) runs with a hook after its N-th store read and a
fault after its first cache write: killed before its re-check (its journal notes stay for
beat's sweep, and with ``retried`` its task is redelivered at once, another try that re-checks
its hits), or its reply lost (the work fails and is tried again).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from typing import Any, Final

import redis

from tests.support.interleave import FaultyCache, HookedStore, Killed, Storage, lost_reply
from tests.support.registrymodel import DIGESTS, MANIFEST_BLOBS, MANIFEST_DIGESTS, Registry
from worker.cache import BlobDescriptorCache
from worker.cache.keys import repository_blobs_key
from worker.core.blobservice import CachedBlobService
from worker.core.fanout import plan
from worker.core.pipeline import BatchResult, process
from worker.core.reconcile import reconcile
from worker.core.rewarm import LARGE_REPOSITORY, rewarm
from worker.errors import BlobNotFoundError, WarmerError
from worker.registry.events import Event, Kind
from worker.registry.versions import RegistryVersion
from worker.state import StateStore

__all__ = ["TRIES", "World", "text"]

#: A warm event still failing after this many tries is dead-lettered (the ledger's 16).
TRIES: Final = 3


def text(value: bytes | str) -> str:
    """A Redis reply as text."""
    return value.decode() if isinstance(value, bytes) else value


class World:
    """A registry, its cache, the worker that handles its events, and two racing writers."""

    def __init__(
        self, store: Any, cache_redis: redis.Redis, state: StateStore, version: RegistryVersion
    ) -> None:
        self.redis = cache_redis
        self.redis.flushdb()
        self.store = store
        self.state = state
        self.registry = Registry(Storage(store), version)
        self.queued: list[Event] = []
        self.tries: dict[str, int] = {}
        journal = state.unchecked
        for note, _ in journal.older_than(0, limit=100_000):  # a fresh journal
            journal.close(note)
        # The worker that handles deletes and retries, and the two whose writes race them.
        self.cache = BlobDescriptorCache(cache_redis, version)
        self.deleter = CachedBlobService(self.cache, store, journal=journal)
        self.faulty = [FaultyCache(cache_redis, version) for _ in range(2)]
        self.hooked = [HookedStore(store) for _ in range(2)]
        self.writers = [
            CachedBlobService(c, h, journal=journal)
            for c, h in zip(self.faulty, self.hooked, strict=True)
        ]

    def members(self, repository: str) -> set[str]:
        """The cache's membership of ``repository``."""
        return {text(m) for m in self.redis.smembers(repository_blobs_key(repository))}

    def noted(self) -> set[tuple[str, str]]:
        """What the journal's open notes cover: writes whose writer died before its re-check."""
        notes = self.state.unchecked.older_than(-3600, limit=100_000)  # all, up to now
        return {(repository, d) for _, (repository, _, digests) in notes for d in digests}

    # -- the registry, with its cache and its events -------------------------------------------

    def push(self, repository: str, digest: str) -> Event:
        """A blob pushed, or an image (its blobs, each notified, then its manifest)."""
        if digest in MANIFEST_DIGESTS:
            for blob in self.registry.push_manifest(repository, digest):
                self.queued.append(Event(uuid.uuid4().hex, Kind.WARM_BLOB, repository, blob))
            kind = Kind.WARM_MANIFEST
        else:
            self.registry.push_blob(repository, digest)
            kind = Kind.WARM_BLOB
        self.queued.append(Event(uuid.uuid4().hex, kind, repository, digest))
        return self.queued[-1]

    def make_live(self, repository: str, digest: str) -> None:
        """Pushed if it is not live, its events handled long ago."""
        if not self.registry.live(repository, digest):
            before = len(self.queued)
            self.push(repository, digest)
            del self.queued[before:]

    def delete(self, repository: str, digest: str, *, handled: bool) -> None:
        """A blob, or a manifest by digest: link removed, the registry's own clear (3.1), an
        event handled at once or queued."""
        if not self.registry.delete(repository, digest):
            return
        self.cache.clear(digest, repository)
        event = Event(uuid.uuid4().hex, Kind.EVICT, repository, digest)
        if handled:
            self.handle(event, self.deleter)
        else:
            self.queued.append(event)

    def collect(self, *, untagged: bool) -> None:
        """Garbage-collect, then a reconcile (the cache answers for what it swept till then)."""
        self.registry.garbage_collect(untagged=untagged)
        reconcile(self.cache, self.store)

    def action(
        self, action: str, repository: str, digest: str, handled: bool
    ) -> Callable[[], None]:
        """What comes in the middle of a writer: a delete of ``digest`` or a garbage-collect
        (``handled`` says which kind: handled at once, or ``--delete-untagged``)."""
        if action == "collect":
            return lambda: self.collect(untagged=handled)
        return lambda: self.delete(repository, digest, handled=handled)

    def handle(self, event: Event, service: CachedBlobService) -> BatchResult:
        """A task of one event; it stays queued until it settles (a warm event is
        dead-lettered after :data:`TRIES`; a delete must settle)."""
        # Killed propagates (nothing of the worker catches it); the event then stays queued.
        if event not in self.queued:
            self.queued.append(event)  # acked only once handled
        result = process([event], service, self.state, manifest_wait=0)
        self.tries[event.id] = tries = self.tries.get(event.id, 0) + 1
        dead = event.kind is not Kind.EVICT and tries >= TRIES
        if (dead or not result.retry) and event in self.queued:
            self.queued.remove(event)
        return result

    # -- writers ---------------------------------------------------------------------------------

    def run(
        self,
        which: int,
        writer: str,
        repository: str,
        digest: str,
        at: int,
        hook: Callable[[], None],
        fault: str | None,
    ) -> None:
        """Writer ``which`` (0 or 1) with ``hook`` after its ``at``-th read and ``fault`` after
        its first cache write; what a dead or failed writer leaves is the sweep's or a retry's."""
        self.hooked[which].arm(at, hook)
        killed = fault in ("killed", "retried")
        self.faulty[which].fault = Killed() if killed else lost_reply() if fault else None
        try:
            self._write(self.writers[which], writer, repository, digest, fault == "retried")
        except Killed:
            pass  # its writes' notes stay in the journal, for beat's sweep
        except WarmerError:
            pass  # a lost reply or a store error: the work fails and is tried again
        finally:
            self.hooked[which].disarm()
            self.faulty[which].fault = None

    def _write(
        self, service: CachedBlobService, writer: str, repository: str, digest: str, retried: bool
    ) -> None:
        if writer == "push":
            event = self.push(repository, digest)
            try:
                self.handle(event, service)  # its retry, if any, stays queued
            except Killed:
                if not retried:
                    raise
                result = self.handle(event, self.deleter)  # redelivered at once
                if not result.retry:  # what it re-checked for sure: the blobs it warmed
                    done = [digest] if digest in DIGESTS else list(MANIFEST_BLOBS[digest])
                    self._assert_retry_left_nothing_dangling(repository, "", done)
        elif writer == "rewarm":
            rewarm(service)
        elif writer == "fan-out":
            self._fan_out(service, repository, retried, large=3)  # shards, from 3 links
        elif writer == "heal":
            self.redis.flushdb()
            self._fan_out(service, repository, retried, large=LARGE_REPOSITORY)
        elif writer == "fetch":
            with contextlib.suppress(BlobNotFoundError):
                service.fetch(repository, digest)
        else:
            service.exists(repository, digest)

    def _fan_out(
        self, service: CachedBlobService, repository: str, retried: bool, *, large: int
    ) -> None:
        # A task a chunk of repositories (16 shards for a large one); one deleted since the
        # plan is skipped; a killed task's message is redelivered: its next try re-checks its
        # hits (tasks.base.another_try).
        for names, shard, _links in plan(self.store, [repository], large=large):
            try:
                rewarm(service, names, shard=shard, skip_missing=True)
            except Killed:
                if not retried:
                    raise
                rewarm(self.deleter, names, shard=shard, recheck_hits=True, skip_missing=True)
                for name in names:
                    self._assert_retry_left_nothing_dangling(name, shard)

    def _assert_retry_left_nothing_dangling(
        self, repository: str, shard: str, pushed: list[str] | None = None
    ) -> None:
        # Another try of a killed task meets its own entries as cache hits: it must re-check
        # them. A re-warm's walk lists what is linked, so its data must be there; a push's
        # warm re-checks the digests its event names, so they must be live.
        for digest in self.members(repository):
            if pushed is not None and digest not in pushed:
                continue
            walked = self.registry.linked(repository, digest)
            if digest.partition(":")[2].startswith(shard) and (walked or pushed is not None):
                assert self.registry.live(repository, digest), (
                    f"{repository} lists {digest} after another try of its killed "
                    f"{'push' if pushed is not None else 're-warm'}: its link or data is gone"
                )
