"""A delete always wins, model-checked: hypothesis drives real Redis and a real store (on disk;
S3 on moto with a smaller budget) through random interleavings of every writer with deletes.

Steps: pushes (a blob pushed, or mounted from another repository), repository-scoped blob
deletes (the registry removes the link, clears its own cache as 3.1 does, then notifies),
garbage-collect (data of blobs no repository links any more, no event), the cache flushed
(a restart, or LRU eviction), events delivered late,
twice or out of order, reconcile, and a writer run with a delete injected right after one of
its store reads, chosen by hypothesis (the delete handled at once, or left queued), sometimes
with a fault right after its cache write: the worker killed before its re-check (the work is
redelivered) or the write's reply lost (the event is retried). The writers: a push event, a
re-warm in the foreground, a fanned-out re-warm, the heal (a flushed cache re-warmed),
``fetch`` and ``exists``.

After quiescence (every queued event handled, and beat's sweep of the writes that a killed
writer left unchecked) no membership names a blob that its repository no longer links or whose
data is gone; and a re-warm then leaves every live link warm with the store's size.
``make test-model`` runs a long budget (``WARMER_MODEL_EXAMPLES``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from bench.s3_endpoint import ACCESS_KEY, REGION, SECRET_KEY, client
from tests.support.interleave import FaultyCache, HookedStore, Killed, Storage, lost_reply
from worker.cache import BlobDescriptorCache
from worker.cache.keys import blob_key, repository_blobs_key
from worker.core.blobservice import CachedBlobService
from worker.core.pipeline import process
from worker.core.reconcile import reconcile
from worker.core.rewarm import plan, rewarm
from worker.errors import BlobNotFoundError, WarmerError
from worker.registry.events import Event, Kind
from worker.registry.versions import RegistryVersion
from worker.state import StateStore
from worker.storage import paths
from worker.storage.filesystem import FilesystemStore
from worker.storage.s3 import S3Store

# Names that are prefixes of one another, as listings meet them.
REPOSITORIES = ("math", "math-voila", "a/b")
BLOBS = tuple(f"layer {i}".encode() for i in range(4))
DIGESTS = tuple("sha256:" + hashlib.sha256(b).hexdigest() for b in BLOBS)
ALL_WRITERS = ("push", "rewarm", "fan-out", "heal", "fetch", "exists")
#: One writer or a few (``WARMER_MODEL_WRITERS=rewarm,heal``): to see each fail without the rule.
WRITERS = (
    tuple(os.environ.get("WARMER_MODEL_WRITERS", "").split(","))
    if os.environ.get("WARMER_MODEL_WRITERS")
    else ALL_WRITERS
)
FAULTS = (None, None, "killed", "reply lost")

EXAMPLES = int(os.environ.get("WARMER_MODEL_EXAMPLES", "0"))


class DeleteWins(RuleBasedStateMachine):
    """The registry's storage, its cache, the warmer's writers and a delete that interleaves."""

    def __init__(self, store: Any, cache_redis: redis.Redis, state: StateStore) -> None:
        super().__init__()
        self.redis = cache_redis
        self.redis.flushdb()
        self.storage = Storage(store)
        self.store = store
        self.state = state
        self.storage.wipe()  # a fresh store every example
        self.links: set[tuple[str, str]] = set()
        self.data: set[str] = set()
        self.queued: list[Event] = []
        # The worker that handles deletes, and the one whose writes race them.
        cache = BlobDescriptorCache(cache_redis, RegistryVersion.V3)
        self.deleter = CachedBlobService(cache, store)
        self.redis_cache = cache
        self.faulty = FaultyCache(cache_redis, RegistryVersion.V3)
        self.hooked = HookedStore(store)
        for note, _ in state.unchecked.older_than(0, limit=100_000):  # a fresh journal
            state.unchecked.close(note)
        self.writer: Any = CachedBlobService(self.faulty, self.hooked, journal=state.unchecked)

    # -- what the registry does ------------------------------------------------------------------

    @rule(repository=st.sampled_from(REPOSITORIES), blob=st.integers(0, len(BLOBS) - 1))
    def push(self, repository: str, blob: int) -> None:
        """A blob pushed (or mounted: its data is there already) and linked; an event queued."""
        digest = DIGESTS[blob]
        self.storage.write(paths.blob_data(digest), BLOBS[blob])
        self.storage.write(paths.layer_link(repository, digest), digest.encode())
        self.data.add(digest)
        self.links.add((repository, digest))
        self.queued.append(Event(uuid.uuid4().hex, Kind.WARM_BLOB, repository, digest))

    @rule(repository=st.sampled_from(REPOSITORIES), blob=st.integers(0, len(BLOBS) - 1))
    def delete(self, repository: str, blob: int) -> None:
        """DELETE of a blob in a repository: link removed, the registry's own clear, notified."""
        self._delete(repository, DIGESTS[blob], handled=False)

    @rule()
    def garbage_collect(self) -> None:
        """The data of every blob no repository links is swept; no event tells."""
        for digest in sorted(self.data):
            if not any(d == digest for _, d in self.links):
                self.storage.remove(paths.blob_data(digest))
                self.data.discard(digest)

    @rule()
    def cache_flushed(self) -> None:
        """The cache Redis restarted empty, or evicted (it runs allkeys-lru)."""
        self.redis.flushdb()

    @rule(pick=st.integers(0, 1000), again=st.booleans())
    def deliver(self, pick: int, again: bool) -> None:
        """One queued event handled (late, out of order); ``again``: it stays, to come twice."""
        if not self.queued:
            return
        event = self.queued[pick % len(self.queued)]
        if not again:
            self.queued.remove(event)
        self._handle(event, self.deleter)

    @rule()
    def reconcile(self) -> None:
        reconcile(self.deleter.cache, self.store)

    # -- a writer with a delete in the middle ----------------------------------------------------

    @rule(
        writer=st.sampled_from(WRITERS),
        at=st.integers(1, 4),
        repository=st.sampled_from(REPOSITORIES),
        blob=st.integers(0, len(BLOBS) - 1),
        handled=st.booleans(),
        fault=st.sampled_from(FAULTS),
        cold=st.booleans(),
    )
    def write_while_deleting(
        self,
        writer: str,
        at: int,
        repository: str,
        blob: int,
        handled: bool,
        fault: str | None,
        cold: bool,
    ) -> None:
        """A writer runs; right after its ``at``-th store read the blob is deleted. The blob is
        linked first if it is not (its push handled long ago); ``cold``: the cache restarted
        empty just before."""
        digest = DIGESTS[blob]
        if (repository, digest) not in self.links:
            self.push(repository, blob)
            self.queued.pop()  # handled long ago
        if cold:
            self.redis.flushdb()
        self.hooked.arm(at, lambda: self._delete(repository, digest, handled=handled))
        self.faulty.fault = Killed() if fault == "killed" else lost_reply() if fault else None
        try:
            self._write(writer, repository, digest)
        except Killed:
            pass  # its writes' notes stay in the journal, for beat's sweep
        except WarmerError:
            pass  # a lost reply or a store error: the work fails and is tried again
        finally:
            self.hooked.disarm()
            self.faulty.fault = None

    def _write(self, writer: str, repository: str, digest: str) -> None:
        if writer == "push":
            self.push(repository, DIGESTS.index(digest))
            event = self.queued[-1]
            self._handle(event, self.writer)  # its retry, if any, stays queued
        elif writer == "rewarm":
            rewarm(self.writer)
        elif writer == "fan-out":
            for name, shard in plan(self.store, [repository], large=2):
                rewarm(self.writer, [name], shard=shard)
        elif writer == "heal":
            self.redis.flushdb()
            rewarm(self.writer)
        elif writer == "fetch":
            with contextlib.suppress(BlobNotFoundError):
                self.writer.fetch(repository, digest)
        else:
            self.writer.exists(repository, digest)

    # -- helpers -----------------------------------------------------------------------------------

    def _delete(self, repository: str, digest: str, *, handled: bool) -> None:
        if (repository, digest) not in self.links:
            return
        self.storage.remove(paths.layer_link(repository, digest))
        self.links.discard((repository, digest))
        self.deleter.cache.clear(digest, repository)  # the registry's own clear (3.1)
        event = Event(uuid.uuid4().hex, Kind.EVICT, repository, digest)
        if handled:
            self._handle(event, self.deleter)
        else:
            self.queued.append(event)

    def _handle(self, event: Event, service: CachedBlobService) -> None:
        # Killed propagates (nothing of the worker catches it); the event then stays queued.
        if event not in self.queued:
            self.queued.append(event)  # acked only once handled
        result = process([event], service, self.state)
        if not result.retry and event in self.queued:
            self.queued.remove(event)

    @invariant()
    def memberships_are_a_set_of_links(self) -> None:
        # Not an assertion of staleness mid-run (a queued delete has not been handled yet):
        # only that every member is a digest some push named.
        for repository in REPOSITORIES:
            for member in self.redis.smembers(repository_blobs_key(repository)):
                assert _text(member) in DIGESTS

    def teardown(self) -> None:
        self.quiesce_and_check()

    def quiesce_and_check(self) -> None:
        """Every queued event handled (retried until it settles), the journal swept; then
        nothing stale, and a re-warm leaves every live link warm with the store's size."""
        for _ in range(5 * len(self.queued) + 5):  # each settles within a few tries
            if not self.queued:
                break
            self._handle(self.queued[0], self.deleter)
        assert not self.queued, f"events that never settle: {self.queued}"
        # Beat's sweep, once a dead writer's notes are old enough (here: at once).
        CachedBlobService(self.redis_cache, self.store, journal=self.state.unchecked).writer.sweep(
            0
        )
        self._assert_nothing_stale()
        rewarm(self.deleter)
        self._assert_nothing_stale()
        for repository, digest in self.links:
            assert self.redis.sismember(repository_blobs_key(repository), digest), (
                f"{repository}@{digest} is linked but not warm after a re-warm"
            )
            size = self.redis.hget(blob_key(digest), "size")
            assert size == str(len(BLOBS[DIGESTS.index(digest)])).encode()

    def _assert_nothing_stale(self) -> None:
        for repository in REPOSITORIES:
            for raw in self.redis.smembers(repository_blobs_key(repository)):
                digest = _text(raw)
                assert (repository, digest) in self.links, (
                    f"{repository} still lists {digest}, whose link was deleted"
                )
                assert digest in self.data, f"{repository} lists {digest}, whose data is gone"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _run(store: Any, cache_redis: redis.Redis, state: StateStore, examples: int) -> None:
    machine: Any = lambda: DeleteWins(store, cache_redis, state)  # noqa: E731 (a factory)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES or examples,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


def test_a_delete_always_wins_on_a_filesystem(
    tmp_path: Any, cache_redis: redis.Redis, state: StateStore
) -> None:
    _run(FilesystemStore(tmp_path / "registry"), cache_redis, state, examples=250)


@pytest.mark.timeout(600)
def test_a_delete_always_wins_on_s3(
    s3_endpoint: str, cache_redis: redis.Redis, state: StateStore
) -> None:
    bucket = f"model-{uuid.uuid4().hex[:8]}"
    client(s3_endpoint).create_bucket(Bucket=bucket)
    store = S3Store(
        bucket,
        "/srv/registry",
        region=REGION,
        endpoint=s3_endpoint,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
    )
    _run(store, cache_redis, state, examples=40)
