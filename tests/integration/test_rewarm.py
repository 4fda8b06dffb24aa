"""Re-warm over a synthetic store: what it writes, what it counts, how it batches."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest
import redis

from bench.layout import LayoutWriter
from tests.support.redisdump import dump
from tests.support.registry import free_port
from worker.cache import BlobDescriptorCache
from worker.config.settings import load_settings
from worker.core.blobservice import CachedBlobService
from worker.core.clients import build_cache
from worker.core.fanout import Chunk, plan
from worker.core.rewarm import SHARDS, RewarmSummary, rewarm, summarize
from worker.errors import CacheError, RepositoryNotFoundError, StoreUnavailableError
from worker.registry.versions import RegistryVersion
from worker.state import StateStore
from worker.storage import paths
from worker.storage.filesystem import FilesystemStore


def _three_images(layout: LayoutWriter) -> None:
    layout.image("team/app", "v1", b"shared", b"a")
    layout.image("other/app", "v1", b"shared", b"b", b"c")
    layout.image("team/app/sub", "v1", b"d")


def test_rewarm_warms_every_blob_and_manifest_then_only_hits(
    service: CachedBlobService, layout: LayoutWriter, cache_redis: redis.Redis
) -> None:
    _three_images(layout)
    first = rewarm(service)
    assert (first.repositories, first.blobs, first.manifests) == (3, 9, 3)
    assert (first.hits, first.misses, first.errors) == (0, 12, 0)
    keys = dump(cache_redis)
    assert len([k for k in keys if k.startswith("blobs::")]) == 11  # 8 distinct blobs + 3 manifests
    assert sorted(k for k in keys if k.endswith("::blobs")) == [
        "repository::other/app::blobs",
        "repository::team/app/sub::blobs",
        "repository::team/app::blobs",
    ]
    second = rewarm(service)
    assert (second.hits, second.misses) == (12, 0)
    assert dump(cache_redis) == keys


def test_registry_2_manifests_get_a_global_descriptor_and_no_membership(
    layout: LayoutWriter, cache_redis: redis.Redis
) -> None:
    manifest, blobs = layout.image("team/app", "v1", b"l")
    rewarm(CachedBlobService(BlobDescriptorCache(cache_redis, RegistryVersion.V2), layout.store))
    keys = dump(cache_redis)
    assert set(keys["repository::team/app::blobs"]) == set(blobs)
    assert f"repository::team/app::blobs::{manifest}" not in keys
    assert cache_redis.hget(f"blobs::{manifest}", "size") is not None


def test_registry_3_manifests_are_members_with_a_repository_media_type(
    service: CachedBlobService, layout: LayoutWriter, cache_redis: redis.Redis
) -> None:
    manifest, blobs = layout.image("team/app", "v1", b"l")
    rewarm(service)  # the default: registry 3.x
    keys = dump(cache_redis)
    assert set(keys["repository::team/app::blobs"]) == {*blobs, manifest}
    assert keys[f"repository::team/app::blobs::{manifest}"] == {
        "mediatype": "application/octet-stream"
    }
    assert keys[f"blobs::{manifest}"]["digest"] == manifest


@pytest.mark.parametrize("batch_size", [1, 2, 1000])
def test_batch_size_changes_round_trips_not_results(
    service: CachedBlobService, layout: LayoutWriter, cache_redis: redis.Redis, batch_size: int
) -> None:
    _three_images(layout)
    summary = rewarm(service, batch_size=batch_size)
    assert (summary.blobs, summary.misses) == (9, 12)
    # 11 global hashes, 3 membership sets, a repository hash for 9 blobs and 3 manifests (3.x)
    assert len(dump(cache_redis)) == 11 + 3 + 9 + 3


def test_rewarm_of_named_repositories_only(
    service: CachedBlobService, layout: LayoutWriter, cache_redis: redis.Redis
) -> None:
    _three_images(layout)
    summary = rewarm(service, ["team/app"])
    assert (summary.repositories, summary.blobs) == (1, 3)
    assert not any("other" in k for k in dump(cache_redis))


def test_rewarm_refuses_a_repository_that_is_not_in_the_store(
    service: CachedBlobService, layout: LayoutWriter
) -> None:
    _three_images(layout)
    with pytest.raises(RepositoryNotFoundError, match="nope is not in the store"):
        rewarm(service, ["nope"])


def test_links_to_collected_blobs_are_counted_as_errors_and_the_rest_is_warmed(
    service: CachedBlobService, layout: LayoutWriter, cache_redis: redis.Redis
) -> None:
    _manifest, blobs = layout.image("team/app", "v1", b"kept", b"gone")
    os.remove(layout.store.os_path(paths.blob_data(blobs[2])))
    summary = rewarm(service)
    assert (summary.blobs, summary.errors) == (2 + 1, 1)
    assert cache_redis.sismember("repository::team/app::blobs", blobs[1])
    assert not cache_redis.sismember("repository::team/app::blobs", blobs[2])


def test_progress_is_reported_as_the_walk_goes(
    service: CachedBlobService, layout: LayoutWriter
) -> None:
    _three_images(layout)
    seen: list[tuple[int, int]] = []
    rewarm(service, batch_size=1, on_progress=lambda s: seen.append((s.repositories, s.blobs)))
    assert seen[-1] == (3, 9)
    assert len(seen) >= 9 + 3
    assert seen == sorted(seen)


def test_rewarm_stops_with_cache_error_when_redis_is_unreachable(layout: LayoutWriter) -> None:
    _three_images(layout)
    settings = load_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout=0.5)
    service = CachedBlobService(build_cache(settings), layout.store)
    with pytest.raises(CacheError):
        rewarm(service)


def test_rewarm_stops_with_store_error_when_the_root_is_missing(
    cache_redis: redis.Redis, tmp_path: object
) -> None:
    service = CachedBlobService(BlobDescriptorCache(cache_redis), FilesystemStore("/nonexistent"))
    with pytest.raises(StoreUnavailableError):
        rewarm(service)


def test_rewarm_in_layerinfo_schema_writes_the_driver_path(
    cache_redis: redis.Redis, layout: LayoutWriter
) -> None:
    _manifest, blobs = layout.image("team/app", "v1", b"l")
    service = CachedBlobService(
        BlobDescriptorCache(cache_redis, RegistryVersion.V2_0), layout.store
    )
    rewarm(service)
    path = cache_redis.hget(f"blobs::{blobs[1]}", "path")
    assert isinstance(path, bytes)
    assert path.decode() == paths.blob_data(blobs[1])
    assert path.startswith(b"/docker/registry/v2/blobs/sha256/")


def test_summary_is_json_ready() -> None:
    assert set(RewarmSummary().as_dict()) == {
        "repositories",
        "blobs",
        "manifests",
        "hits",
        "misses",
        "errors",
        "skipped",
        "s3_requests",
        "seconds",
    }


def _peak_bytes(service: CachedBlobService) -> int:
    tracemalloc.start()
    try:
        rewarm(service, batch_size=50, memo_limit=100)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_as_the_store_grows(cache_redis: redis.Redis, tmp_path: Path) -> None:
    peaks = []
    for repositories in (10, 100):
        layout = LayoutWriter(tmp_path / f"root{repositories}")
        for r in range(repositories):
            for j in range(20):
                layout.link(f"app{r}", layout.blob(f"{r}-{j}".encode()))
        service = CachedBlobService(BlobDescriptorCache(cache_redis), layout.store)
        cache_redis.flushdb()
        peaks.append(_peak_bytes(service))
    # Ten times the blobs (2,000 against 200): the peak may not grow with them.
    assert peaks[1] < peaks[0] * 1.5, peaks


def test_a_large_repository_is_planned_as_16_shards_and_small_ones_whole(
    layout: LayoutWriter,
) -> None:
    for i in range(5):
        layout.link("big", layout.blob(f"big {i}".encode()))
    layout.link("small", layout.blob(b"small"))
    chunks = list(plan(layout.store, ["small"], large=5, repositories=1))
    assert chunks[0] == Chunk(["small"], "", 1)  # recently pulled first
    assert [(c.names, c.shard) for c in chunks[1:]] == [(["big"], shard) for shard in SHARDS]


def test_the_shards_together_leave_what_one_rewarm_leaves(
    service: CachedBlobService, layout: LayoutWriter, cache_redis: redis.Redis
) -> None:
    for i in range(40):
        layout.image("big", f"v{i}", f"layer {i}".encode())
    whole = rewarm(service).as_dict()
    expected = dump(cache_redis)
    cache_redis.flushdb()
    parts = [rewarm(service, ["big"], shard=shard).as_dict() for shard in SHARDS]
    assert dump(cache_redis) == expected
    total = summarize(parts)
    for key in ("repositories", "blobs", "manifests", "misses", "errors"):
        assert total[key] == whole[key], key


def test_small_repositories_share_a_batch_and_its_round_trips(
    layout: LayoutWriter, cache_redis: redis.Redis, state: StateStore, version: RegistryVersion
) -> None:
    # A store of many one-image repositories (the shape of most registries): the walk's cost
    # must be a batch's, not a repository's. Counted at the server, the same one for both DBs.
    for i in range(40):
        layout.image(f"team/app{i}", "v1", b"a shared layer", f"layer {i}".encode())
    cache = BlobDescriptorCache(cache_redis, version)
    service = CachedBlobService(cache, layout.store, journal=state.unchecked)
    cache_redis.config_resetstat()
    summary = rewarm(service)
    assert (summary.repositories, summary.blobs, summary.manifests) == (40, 120, 40)
    assert (summary.misses, summary.errors) == (160, 0)
    # Calls that ran (the first call of a script not yet loaded fails, and is sent again).
    calls = {
        name.removeprefix("cmdstat_"): figures["calls"] - figures.get("failed_calls", 0)
        for name, figures in cache_redis.info("commandstats").items()
    }
    # One read and one write for the links, the same for the manifests (was 4 a repository),
    # and a note opened and closed for each write (was one of each a repository).
    assert calls.get("evalsha", 0) + calls.get("eval", 0) <= 4, sorted(calls.items())
    assert (calls["zadd"], calls["zrem"]) == (2, 2), calls
    assert state.unchecked.older_than(0) == []
    second = rewarm(service)
    assert (second.hits, second.misses) == (160, 0)
