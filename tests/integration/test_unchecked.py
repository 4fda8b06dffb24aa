"""The journal of unchecked cache writes (worker.state.unchecked) and the writer's use of it:
each write noted until re-checked, one note a writer, and no state Redis no reason to fail."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from bench.layout import LayoutWriter
from worker.cache import BlobDescriptorCache
from worker.cli.processes import free_port
from worker.core.blobservice import CachedBlobService
from worker.core.rewarm import rewarm
from worker.core.writes import CacheWriter
from worker.errors import StoreError
from worker.registry.descriptor import Descriptor
from worker.state import StateStore
from worker.storage import paths
from worker.storage.filesystem import FilesystemStore


def test_two_writers_of_the_same_batch_keep_a_note_each(state: StateStore) -> None:
    journal = state.unchecked
    first = journal.open("team/app", ["sha256:" + "a" * 64], manifests=False)
    journal.open("team/app", ["sha256:" + "a" * 64], manifests=False)
    journal.close(first)  # the first re-checked; the second died before its check
    assert [n for _, n in journal.older_than(0)] == [("team/app", False, ["sha256:" + "a" * 64])]


def test_a_write_whose_writer_died_is_swept_and_forgotten_once_deleted(
    layout: LayoutWriter, cache_redis: redis.Redis, state: StateStore
) -> None:
    digest = layout.blob(b"a layer")
    layout.link("team/app", digest)
    cache = BlobDescriptorCache(cache_redis)
    writer = CacheWriter(cache, layout.store, state.unchecked)
    # A writer noted its write, wrote, and died before its re-check; then the link went.
    state.unchecked.open("team/app", [digest], manifests=False)
    cache.set_descriptors([Descriptor(digest, 7, path=paths.blob_data(digest))], "team/app")
    (layout.store.root / paths.layer_link("team/app", digest).lstrip("/")).unlink()
    assert writer.sweep(older_than=60) == 0  # too young: its writer may be at work
    assert writer.sweep(older_than=0) == 1
    assert not cache_redis.sismember("repository::team/app::blobs", digest)
    assert state.unchecked.older_than(0) == []


def test_without_the_state_redis_a_write_is_still_made_and_checked(
    layout: LayoutWriter, cache_redis: redis.Redis
) -> None:
    digest = layout.blob(b"a layer")
    layout.link("team/app", digest)
    away = StateStore(redis.Redis(port=free_port(), socket_connect_timeout=0.5))
    writer = CacheWriter(BlobDescriptorCache(cache_redis), layout.store, away.unchecked)
    gone = writer.write([Descriptor(digest, 7, path=paths.blob_data(digest))], "team/app")
    assert gone == set()
    assert cache_redis.sismember("repository::team/app::blobs", digest)


class _FailingStore(FilesystemStore):
    """The store on disk, whose re-checks of one repository go unanswered (an EIO)."""

    def __init__(self, root: Path, failing: str) -> None:
        super().__init__(root)
        self.failing = failing

    def fetch_cached(self, repository: str | None, digests: Sequence[str], **kw: Any) -> Any:
        if repository == self.failing:
            return [StoreError(f"cannot read link of {d}: I/O error") for d in digests]
        return super().fetch_cached(repository, digests, **kw)


def test_notes_of_one_repository_keep_the_earlier_shape_and_both_shapes_are_read(
    state: StateStore, state_redis: redis.Redis
) -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    one = state.unchecked.open("team/a", [a], manifests=False)
    assert json.loads(one)[:3] == ["team/a", False, [a]]  # what earlier releases' sweeps read
    state.unchecked.open_many({"team/a": [a], "team/b": [b]}, manifests=True)
    assert sorted(n for _, n in state.unchecked.older_than(0)) == [
        ("team/a", False, [a]),
        ("team/a", True, [a]),
        ("team/b", True, [b]),
    ]


def test_a_sweep_rechecks_every_repository_of_a_note_when_one_fails(
    layout: LayoutWriter, cache_redis: redis.Redis, state: StateStore
) -> None:
    # A writer of two repositories noted its write, wrote, and died; then b's link went, and
    # a's re-check cannot be answered. b is forgotten all the same; the note stays for a.
    digests = {}
    for name in ("team/a", "team/b"):
        digests[name] = layout.blob(name.encode())
        layout.link(name, digests[name])
    cache = BlobDescriptorCache(cache_redis)
    store = _FailingStore(layout.store.root, failing="team/a")
    writer = CacheWriter(cache, store, state.unchecked)
    state.unchecked.open_many({r: [d] for r, d in digests.items()}, manifests=False)
    for name, d in digests.items():
        cache.set_descriptors([Descriptor(d, 6, path=paths.blob_data(d))], name)
    (layout.store.root / paths.layer_link("team/b", digests["team/b"]).lstrip("/")).unlink()
    assert writer.sweep(older_than=0) == 0
    assert not cache_redis.sismember("repository::team/b::blobs", digests["team/b"])
    assert not cache_redis.sismember("repository::team/a::blobs", digests["team/a"])  # undone
    # The note stays for a, postponed: noted as begun now, behind notes begun since.
    assert len(state.unchecked.older_than(0)) == 2
    assert state.unchecked.older_than(60) == []


def test_a_rewarm_batch_whose_recheck_fails_in_one_repository_fails_there_only(
    layout: LayoutWriter, cache_redis: redis.Redis
) -> None:
    for i in range(5):
        layout.link(f"team/r{i}", layout.blob(f"layer {i}".encode()))
    store = _FailingStore(layout.store.root, failing="team/r0")
    summary = rewarm(CachedBlobService(BlobDescriptorCache(cache_redis), store))
    assert (summary.repositories, summary.blobs, summary.errors) == (5, 5, 1)
    members = [cache_redis.scard(f"repository::team/r{i}::blobs") for i in range(5)]
    assert members == [0, 1, 1, 1, 1]
