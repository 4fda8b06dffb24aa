"""Images by reference, on a real Redis and a real storage tree: ``check_image`` (read-only)
says warm, cold, stale or missing for each blob of each platform, and ``warm_image`` writes
what a push event of the same manifest writes, through the write path where a delete wins."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import redis

from bench.layout import LayoutWriter
from tests.support.redisdump import dump
from worker.cache import BlobDescriptorCache
from worker.core.blobservice import CachedBlobService
from worker.core.imagecheck import BlobState, check_image
from worker.core.images import warm_image
from worker.core.pipeline import process
from worker.errors import BlobNotFoundError, CacheError, ImageNotFoundError, TagNotFoundError
from worker.registry.events import Event, Kind
from worker.registry.reference import image_reference
from worker.registry.versions import RegistryVersion
from worker.state import StateStore
from worker.storage import paths
from worker.storage.filesystem import FilesystemStore

REPO = "shop/api"


def _multi(layout: LayoutWriter) -> dict[str, Any]:
    amd, amd_blobs = layout.image(REPO, "amd64-only", b"shared", b"amd64 layer")
    arm, arm_blobs = layout.image(REPO, "arm64-only", b"shared", b"arm64 layer")
    index = layout.index(REPO, "2.4.1", ("linux/amd64", amd), ("linux/arm64/v8", arm))
    return {"index": index, "amd": (amd, amd_blobs), "arm": (arm, arm_blobs)}


def _check(cache: BlobDescriptorCache, store: FilesystemStore, text: str, **kw: Any) -> Any:
    return check_image(cache, store, image_reference(text), **kw)


def test_an_image_is_cold_then_warm_after_warm_image(
    cache: BlobDescriptorCache, store: FilesystemStore, layout: LayoutWriter
) -> None:
    images = _multi(layout)
    before = _check(cache, store, f"{REPO}:2.4.1")
    assert not before.warm
    assert [p.platform for p in before.platforms] == ["linux/amd64", "linux/arm64/v8"]
    # index, child, config and two layers a platform, all cold
    assert [(p.count(BlobState.COLD), len(p.states)) for p in before.platforms] == [(5, 5)] * 2
    assert before.as_dict()["digest"] == images["index"]

    warmed = warm_image(CachedBlobService(cache, store), image_reference(f"{REPO}:2.4.1"))
    # 4 distinct blobs (one config, as both configs say the same; the shared layer; a layer
    # each), and 3 manifests
    assert warmed.figures.warmed == 7
    after = _check(cache, store, f"{REPO}:2.4.1")
    assert after.warm, after.as_dict()
    assert after.as_dict()["platforms"][0] | {"not_warm": {}} == {
        "platform": "linux/amd64",
        "manifest": images["amd"][0],
        "blobs": 5,
        "warm": 5,
        "cold": 0,
        "stale": 0,
        "missing": 0,
        "not_warm": {},
    }


def test_a_platform_is_warmed_and_checked_alone(
    cache: BlobDescriptorCache, store: FilesystemStore, layout: LayoutWriter
) -> None:
    images = _multi(layout)
    ref = image_reference(f"{REPO}:2.4.1")
    warm_image(CachedBlobService(cache, store), ref, "linux/amd64")
    assert _check(cache, store, f"{REPO}:2.4.1", platform="linux/amd64").warm
    arm = _check(cache, store, f"{REPO}:2.4.1", platform="linux/arm64")
    assert not arm.warm
    arm_layer = images["arm"][1][2]
    assert arm.platforms[0].states[arm_layer] is BlobState.COLD
    assert arm.platforms[0].states[images["index"]] is BlobState.WARM  # read by both
    assert not _check(cache, store, f"{REPO}:2.4.1").warm
    with pytest.raises(ImageNotFoundError, match=r"no platform linux/s390x.*linux/amd64"):
        _check(cache, store, f"{REPO}:2.4.1", platform="linux/s390x")


def test_warm_image_writes_what_the_push_event_writes(
    cache_redis: redis.Redis,
    version: RegistryVersion,
    store: FilesystemStore,
    layout: LayoutWriter,
    state: StateStore,
) -> None:
    images = _multi(layout)
    cache = BlobDescriptorCache(cache_redis, version)
    event = Event("e1", Kind.WARM_MANIFEST, REPO, images["index"])
    result = process([event], CachedBlobService(cache, store), state)
    assert (result.retry, result.dead) == ([], [])
    by_event = dump(cache_redis)
    cache_redis.flushdb()
    warm_image(CachedBlobService(cache, store), image_reference(f"{REPO}@{images['index']}"))
    assert dump(cache_redis) == by_event
    assert check_image(cache, store, image_reference(f"{REPO}:2.4.1")).warm


def test_stale_when_the_store_changed_behind_the_caches_back(
    cache: BlobDescriptorCache, store: FilesystemStore, layout: LayoutWriter
) -> None:
    manifest, blobs = layout.image(REPO, "v1", b"layer one", b"layer two")
    warm_image(CachedBlobService(cache, store), image_reference(f"{REPO}:v1"))
    assert _check(cache, store, f"{REPO}:v1").warm
    config, gone, grown = blobs
    # A layer unlinked from the repository, and another whose data changed size: the cache
    # still answers for both as before.
    os.unlink(store.os_path(paths.layer_link(REPO, gone)))
    with open(store.os_path(paths.blob_data(grown)), "ab") as f:
        f.write(b" and more")
    check = _check(cache, store, f"{REPO}:v1")
    assert not check.warm
    assert check.platforms[0].states == {
        manifest: BlobState.WARM,
        config: BlobState.WARM,
        gone: BlobState.STALE,
        grown: BlobState.STALE,
    }
    assert check.as_dict()["platforms"][0]["not_warm"] == {gone: "stale", grown: "stale"}
    # Forgotten from the cache too: missing, which no warm can help.
    cache.clear(gone, REPO)
    assert _check(cache, store, f"{REPO}:v1").platforms[0].states[gone] is BlobState.MISSING


def test_check_writes_nothing(
    cache: BlobDescriptorCache,
    cache_redis: redis.Redis,
    store: FilesystemStore,
    layout: LayoutWriter,
) -> None:
    _multi(layout)
    _check(cache, store, f"{REPO}:2.4.1")
    assert dump(cache_redis) == {}


def test_no_such_tag_or_manifest_is_not_found(
    cache: BlobDescriptorCache, store: FilesystemStore, layout: LayoutWriter
) -> None:
    layout.image(REPO, "v1", b"a")
    with pytest.raises(TagNotFoundError, match="no tag 'v2'"):
        _check(cache, store, f"{REPO}:v2")
    with pytest.raises(TagNotFoundError, match="no tag 'latest'"):
        _check(cache, store, REPO)
    with pytest.raises(BlobNotFoundError, match="not a revision"):
        _check(cache, store, f"{REPO}@sha256:{'0' * 64}")


def test_a_cache_that_does_not_answer_is_an_error(
    store: FilesystemStore, layout: LayoutWriter
) -> None:
    layout.image(REPO, "v1", b"a")
    down = BlobDescriptorCache(redis.Redis(port=1, socket_connect_timeout=0.2))
    with pytest.raises(CacheError):
        _check(down, store, f"{REPO}:v1")
    with pytest.raises(CacheError):
        warm_image(CachedBlobService(down, store), image_reference(f"{REPO}:v1"))


class _DeletesAfterReading(FilesystemStore):
    """A store whose first blob read of ``REPO`` is followed at once by the layer's delete, as
    a registry's delete between the warm's read and its cache write."""

    def __init__(self, root: Path, digest: str) -> None:
        super().__init__(root)
        self.digest = digest
        self.armed = True

    def fetch_many(self, repository: str, digests: Any, sizes: Any = None, **kw: Any) -> Any:
        answers = super().fetch_many(repository, digests, sizes, **kw)
        if self.armed and self.digest in digests:
            self.armed = False
            os.unlink(self.os_path(paths.layer_link(repository, self.digest)))
        return answers


def test_a_delete_during_the_warm_wins(
    cache: BlobDescriptorCache, cache_redis: redis.Redis, layout: LayoutWriter
) -> None:
    _, blobs = layout.image(REPO, "v1", b"config", b"layer")
    store = _DeletesAfterReading(layout.store.root, blobs[1])
    with pytest.raises(BlobNotFoundError, match="deleted"):
        warm_image(CachedBlobService(cache, store), image_reference(f"{REPO}:v1"))
    assert not cache_redis.sismember(f"repository::{REPO}::blobs", blobs[1])
    assert cache_redis.sismember(f"repository::{REPO}::blobs", blobs[0])
