"""A delete always wins, model-checked: hypothesis drives real Redis and a real store (on disk;
S3 on moto with a smaller budget) through random interleavings of every writer with deletes.

Each example is a registry 3.x or 2.x (drawn). Steps: pushes of blobs (or mounts) and of images
(a manifest, its blobs and a tag), deletes of a blob, of a manifest by digest and by tag (the
registry removes the link, clears its own cache as 3.1 does, then notifies), garbage-collect
(``tests/support/registrymodel.py``: 3.x deletes the links of the data it sweeps, 2.x leaves
them, dangling; either way followed by a reconcile, as its own stale entries need one), the cache
flushed (a restart, or LRU eviction), events delivered late, twice or out of order, reconcile,
and a writer run with a delete or a garbage-collect injected right after one of its store
reads, chosen by hypothesis (a delete handled at once, or left queued), sometimes with a fault
right after its cache write: the worker killed before its re-check (the work is redelivered
later, or at once: another try, which finds its own entries as cache hits and must re-check
them, ``recheck_hits``), or the write's reply lost (the event is retried). Or two writers
interleaved: the second runs inside the first, right after one of the first's reads, and the
delete comes inside the second. The writers: a push event (blob or image), a re-warm in the
foreground, a fanned-out re-warm, the heal (a flushed cache re-warmed by the fan-out),
``fetch`` and ``exists``.

After every step: no member that is not live (linked, its data there) but what a dead writer's
journal note covers (a delete clears the cache at once, a garbage-collect is reconciled at once,
so anything else is a writer that lost to them). Right after another try of a killed task: no
member of its scope is linked without data, notes or not. After quiescence (every queued event
handled, and beat's sweep of the writes that a killed writer left unchecked): no membership
names a blob or manifest that its repository no longer links or whose data is gone; and a
re-warm then leaves everything live warm with the store's size.
``make test-model`` runs a long budget (``WARMER_MODEL_EXAMPLES``).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from bench.s3_endpoint import ACCESS_KEY, REGION, SECRET_KEY, client
from tests.support.deletewins import TRIES, World, text
from tests.support.registrymodel import (
    DIGESTS,
    MANIFEST_DIGESTS,
    REPOSITORIES,
    SIZES,
    TARGETS,
    tag_of,
)
from worker.cache.keys import blob_key, repository_blobs_key
from worker.core.reconcile import reconcile
from worker.core.rewarm import rewarm
from worker.registry.versions import RegistryVersion
from worker.state import StateStore
from worker.storage.filesystem import FilesystemStore
from worker.storage.s3 import S3Store

ALL_WRITERS = ("push", "rewarm", "fan-out", "heal", "fetch", "exists")
#: One writer or a few (``WARMER_MODEL_WRITERS=rewarm,heal``): to see each fail without the rule.
WRITERS = (
    tuple(os.environ.get("WARMER_MODEL_WRITERS", "").split(","))
    if os.environ.get("WARMER_MODEL_WRITERS")
    else ALL_WRITERS
)
FAULTS = (None, None, "killed", "reply lost", "retried")
#: After which store read the delete comes: the first most often (a writer's first read is
#: what its write is made of; a hook after its last, the re-check, tests less).
AT = (1, 1, 2, 3, 4)
#: What comes in the middle of a writer: a delete (of its digest), or a garbage-collect.
ACTIONS = ("delete", "delete", "collect")
#: Which registries (``WARMER_MODEL_VERSIONS=2``): 3.x, and 2.x whose GC leaves dangling links.
VERSIONS = tuple(
    RegistryVersion(v) for v in os.environ.get("WARMER_MODEL_VERSIONS", "3,2").split(",")
)

EXAMPLES = int(os.environ.get("WARMER_MODEL_EXAMPLES", "0"))


class DeleteWins(RuleBasedStateMachine):
    """The registry's storage, its cache, the warmer's writers and a delete that interleaves."""

    def __init__(self, store: Any, cache_redis: redis.Redis, state: StateStore) -> None:
        super().__init__()
        self.args = (store, cache_redis, state)
        self.world: World | None = None

    @initialize(version=st.sampled_from(VERSIONS))
    def choose_version(self, version: RegistryVersion) -> None:
        self.world = World(*self.args, version)

    @property
    def w(self) -> World:
        assert self.world is not None  # initialize runs first
        return self.world

    # -- what the registry does ------------------------------------------------------------------

    @rule(repository=st.sampled_from(REPOSITORIES), blob=st.sampled_from(DIGESTS))
    def push(self, repository: str, blob: str) -> None:
        """A blob pushed (or mounted: its data is there already) and linked; an event queued."""
        self.w.push(repository, blob)

    @rule(repository=st.sampled_from(REPOSITORIES), image=st.sampled_from(MANIFEST_DIGESTS))
    def push_image(self, repository: str, image: str) -> None:
        """An image pushed: the blobs it lacks, its manifest, a tag; an event for each."""
        self.w.push(repository, image)

    @rule(repository=st.sampled_from(REPOSITORIES), digest=st.sampled_from(TARGETS))
    def delete(self, repository: str, digest: str) -> None:
        """DELETE of a blob or of a manifest by digest: link removed, the registry's own clear,
        notified."""
        self.w.delete(repository, digest, handled=False)

    @rule(repository=st.sampled_from(REPOSITORIES), image=st.sampled_from(MANIFEST_DIGESTS))
    def delete_tag(self, repository: str, image: str) -> None:
        """DELETE of a manifest by tag: the tag alone (its event does nothing to the cache)."""
        self.w.registry.delete_tag(repository, tag_of(image))

    @rule(untagged=st.booleans())
    def garbage_collect(self, untagged: bool) -> None:
        """Garbage-collect (``untagged``: ``--delete-untagged``), then a reconcile."""
        self.w.collect(untagged=untagged)

    @rule()
    def cache_flushed(self) -> None:
        """The cache Redis restarted empty, or evicted (it runs allkeys-lru)."""
        self.w.redis.flushdb()

    @rule(pick=st.integers(0, 1000), again=st.booleans())
    def deliver(self, pick: int, again: bool) -> None:
        """One queued event handled (late, out of order); ``again``: it stays, to come twice."""
        if not self.w.queued:
            return
        event = self.w.queued[pick % len(self.w.queued)]
        if not again:
            self.w.queued.remove(event)
        self.w.handle(event, self.w.deleter)

    @rule()
    def reconcile(self) -> None:
        reconcile(self.w.cache, self.w.store)

    # -- writers with a delete in the middle -----------------------------------------------------

    @rule(
        writer=st.sampled_from(WRITERS),
        at=st.sampled_from(AT),
        repository=st.sampled_from(REPOSITORIES),
        digest=st.sampled_from(TARGETS),
        action=st.sampled_from(ACTIONS),
        handled=st.booleans(),
        fault=st.sampled_from(FAULTS),
        cold=st.booleans(),
    )
    def write_while_deleting(
        self,
        writer: str,
        at: int,
        repository: str,
        digest: str,
        action: str,
        handled: bool,
        fault: str | None,
        cold: bool,
    ) -> None:
        """A writer runs; right after its ``at``-th store read ``digest`` is deleted (or the
        store garbage-collected). It is pushed first if it is not live (its push handled long
        ago); ``cold``: the cache restarted empty just before."""
        self.w.make_live(repository, digest)
        if cold:
            self.w.redis.flushdb()
        hook = self.w.action(action, repository, digest, handled)
        self.w.run(0, writer, repository, digest, at, hook, fault)

    @rule(
        first=st.sampled_from(WRITERS),
        second=st.sampled_from(WRITERS),
        at=st.tuples(st.integers(1, 3), st.integers(1, 3)),
        repository=st.sampled_from(REPOSITORIES),
        digest=st.sampled_from(TARGETS),
        action=st.sampled_from(ACTIONS),
        handled=st.booleans(),
        fault=st.sampled_from(FAULTS[:4]),
    )
    def two_writers(
        self,
        first: str,
        second: str,
        at: tuple[int, int],
        repository: str,
        digest: str,
        action: str,
        handled: bool,
        fault: str | None,
    ) -> None:
        """Two writers of the same repository interleaved (a re-warm's batch and a push, say):
        right after the first's ``at[0]``-th read the second runs whole, and right after the
        second's ``at[1]``-th read ``digest`` is deleted (or the store collected)."""
        self.w.make_live(repository, digest)
        inner = self.w.action(action, repository, digest, handled)

        def second_runs() -> None:
            self.w.run(1, second, repository, digest, at[1], inner, None)

        self.w.run(0, first, repository, digest, at[0], second_runs, fault)

    # -- checks ----------------------------------------------------------------------------------

    @invariant()
    def nothing_stale_but_what_dead_writers_left(self) -> None:
        # A delete clears the cache at once (the registry's own clear), a garbage-collect is
        # reconciled at once: between steps, a member that is not live was written by a writer
        # that lost to the delete and did not forget it. Only a dead writer may leave one, and
        # its journal note stays open until beat's sweep (checked at the end).
        if self.world is None:
            return
        pipe = self.w.redis.pipeline(transaction=False)
        for repository in REPOSITORIES:
            pipe.smembers(repository_blobs_key(repository))
        stale = []
        for repository, raw in zip(REPOSITORIES, pipe.execute(), strict=True):
            members = {text(m) for m in raw}
            assert members <= set(TARGETS)
            stale += [(repository, d) for d in members if not self.w.registry.live(repository, d)]
        if stale:
            noted = self.w.noted()
            left = [(r, d) for r, d in stale if (r, d) not in noted]
            assert not left, f"stale members that no dead writer's note covers: {left}"

    def teardown(self) -> None:
        if self.world is not None:  # the example ran
            self.quiesce_and_check()

    def quiesce_and_check(self) -> None:
        """Every queued event handled (retried until it settles), the journal swept; then
        nothing stale, and a re-warm leaves everything live warm with the store's size."""
        w = self.w
        for _ in range(TRIES * len(w.queued) + 5):  # each settles within a few tries
            if not w.queued:
                break
            w.handle(w.queued[0], w.deleter)
        assert not w.queued, f"events that never settle: {w.queued}"
        # Beat's sweep, once a dead writer's notes are old enough (here: at once).
        w.deleter.writer.sweep(0)
        self._assert_nothing_stale()
        rewarm(w.deleter)
        self._assert_nothing_stale()
        members = w.registry.version.manifests_are_members
        for repository, digest in w.registry.links | w.registry.revisions:
            if not w.registry.live(repository, digest):
                continue  # 2.x: linked, the data collected
            if members or digest not in MANIFEST_DIGESTS:  # 2.x: a manifest's global hash
                assert w.redis.sismember(repository_blobs_key(repository), digest), (
                    f"{repository}@{digest} is live but not warm after a re-warm"
                )
            size = w.redis.hget(blob_key(digest), "size")
            assert size == str(SIZES[digest]).encode()

    def _assert_nothing_stale(self) -> None:
        for repository in REPOSITORIES:
            for digest in self.w.members(repository):
                assert self.w.registry.linked(repository, digest), (
                    f"{repository} still lists {digest}, whose link was deleted"
                )
                assert digest in self.w.registry.data, (
                    f"{repository} lists {digest}, whose data is gone"
                )


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


# The suite's budget in 10 minutes at most; a long run (make test-model: WARMER_MODEL_EXAMPLES)
# is bounded by its examples alone (500 took 810 s on S3; the marker overrides --timeout).
@pytest.mark.timeout(0 if EXAMPLES else 600)
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
    _run(store, cache_redis, state, examples=25)
