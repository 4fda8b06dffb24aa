"""The journal of unchecked cache writes (worker.state.unchecked) and the writer's use of it:
each write noted until re-checked, one note a writer, and no state Redis no reason to fail."""

from __future__ import annotations

import redis

from bench.layout import LayoutWriter
from worker.cache import BlobDescriptorCache
from worker.cli.processes import free_port
from worker.core.writes import CacheWriter
from worker.registry.descriptor import Descriptor
from worker.state import StateStore
from worker.storage import paths


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
