"""The cached blob service: cachedLayerService's semantics and counts, on a real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from bench.layout import LayoutWriter
from tests.support.redisdump import dump
from tests.support.registry import free_port
from worker.cache import BlobDescriptorCache
from worker.config.settings import load_settings
from worker.core.blobservice import CachedBlobService
from worker.core.clients import cache_redis as build_cache_redis
from worker.errors import BlobNotFoundError, InvalidDigestError, InvalidRepositoryNameError
from worker.state.figures import Figures
from worker.storage.filesystem import FilesystemStore

ABSENT = "sha256:" + "0" * 64


def _tallies(service: CachedBlobService) -> dict[str, dict[str, int]]:
    return service.figures.lookups()


def test_exists_misses_then_hits_and_caches_only_membership(
    service: CachedBlobService, layout: LayoutWriter, cache_redis: redis.Redis
) -> None:
    digest = layout.blob(b"layer")
    layout.link("team/app", digest)
    assert service.exists("team/app", digest)
    assert dump(cache_redis) == {"repository::team/app::blobs": [digest]}
    assert service.exists("team/app", digest)
    assert _tallies(service)["exists"] == {"requests": 2, "hits": 1, "misses": 1}


def test_exists_caches_only_positive_answers(
    service: CachedBlobService, cache_redis: redis.Redis
) -> None:
    assert not service.exists("team/app", ABSENT)
    assert not service.exists("team/app", ABSENT)
    assert dump(cache_redis) == {}
    assert _tallies(service)["exists"] == {"requests": 2, "hits": 0, "misses": 2}


def test_fetch_miss_fills_membership_and_descriptor_then_hits(
    service: CachedBlobService, layout: LayoutWriter, cache_redis: redis.Redis
) -> None:
    digest = layout.blob(b"layer!")
    layout.link("team/app", digest)
    first = service.fetch("team/app", digest)
    assert first.size == 6
    assert dump(cache_redis) == {
        "repository::team/app::blobs": [digest],
        f"blobs::{digest}": {
            "digest": digest,
            "size": "6",
            "mediatype": "application/octet-stream",
        },
        f"repository::team/app::blobs::{digest}": {"mediatype": "application/octet-stream"},
    }
    again = service.fetch("team/app", digest)
    # The blobdescriptor schema keeps no path, so a hit knows all but that.
    assert (again.digest, again.size, again.media_type) == (digest, 6, first.media_type)
    assert _tallies(service) == {
        "exists": {"requests": 0, "hits": 0, "misses": 0},
        "fetch": {"requests": 2, "hits": 1, "misses": 1},
    }


def test_fetch_of_an_absent_blob_raises_counts_a_miss_and_writes_nothing(
    service: CachedBlobService, cache_redis: redis.Redis
) -> None:
    with pytest.raises(BlobNotFoundError):
        service.fetch("team/app", ABSENT)
    assert dump(cache_redis) == {}
    assert _tallies(service)["fetch"] == {"requests": 1, "hits": 0, "misses": 1}


def test_fetch_treats_membership_without_descriptor_as_a_miss(
    service: CachedBlobService, layout: LayoutWriter, cache_redis: redis.Redis
) -> None:
    digest = layout.blob(b"x")
    layout.link("team/app", digest)
    service.exists("team/app", digest)  # membership only, as exists leaves it
    service.fetch("team/app", digest)
    assert _tallies(service)["fetch"] == {"requests": 1, "hits": 0, "misses": 1}
    assert f"blobs::{digest}" in dump(cache_redis)


def test_fetch_many_counts_as_one_fetch_per_digest(
    service: CachedBlobService, layout: LayoutWriter
) -> None:
    digests = [layout.blob(bytes([i])) for i in range(5)]
    for d in digests:
        layout.link("team/app", d)
    service.fetch("team/app", digests[0])
    results = service.fetch_many("team/app", [*digests, ABSENT])
    assert [r.hit for r in results] == [True, False, False, False, False, False]
    assert isinstance(results[-1].error, BlobNotFoundError)
    assert _tallies(service)["fetch"] == {"requests": 7, "hits": 1, "misses": 6}


def _service_on(url: str, store: FilesystemStore) -> CachedBlobService:
    settings = load_settings(redis_url=url, redis_timeout=0.5)
    return CachedBlobService(BlobDescriptorCache(build_cache_redis(settings)), store, Figures())


def test_fetch_falls_back_to_store_when_redis_is_unreachable(
    layout: LayoutWriter, caplog: pytest.LogCaptureFixture
) -> None:
    digest = layout.blob(b"data")
    layout.link("team/app", digest)
    service = _service_on(f"redis://127.0.0.1:{free_port()}/0", layout.store)
    assert service.fetch("team/app", digest).size == 4
    assert service.exists("team/app", digest)
    assert not service.exists("team/app", ABSENT)
    assert _tallies(service) == {
        "exists": {"requests": 2, "hits": 0, "misses": 2},
        "fetch": {"requests": 1, "hits": 0, "misses": 1},
    }
    assert "error fetching" in caplog.text
    assert "error writing to cache" in caplog.text


@pytest.fixture
def outage_redis(outage_redis_proc: Any) -> Iterator[redis.Redis]:
    client = redis.Redis(host=outage_redis_proc.host, port=outage_redis_proc.port)
    client.flushall()
    yield client
    client.flushall()


def test_fetch_falls_back_to_store_when_redis_is_down_and_recovers_after(
    layout: LayoutWriter, outage_redis_proc: Any, outage_redis: redis.Redis
) -> None:
    digest = layout.blob(b"data")
    layout.link("team/app", digest)
    url = f"redis://{outage_redis_proc.host}:{outage_redis_proc.port}/0"
    service = _service_on(url, layout.store)
    service.fetch("team/app", digest)
    service.fetch("team/app", digest)  # a hit: the pool now holds a live connection
    with outage_redis_proc.stopped():
        assert service.fetch("team/app", digest).size == 4
        assert service.exists("team/app", digest)
    assert _tallies(service) == {
        "exists": {"requests": 1, "hits": 0, "misses": 1},
        "fetch": {"requests": 3, "hits": 1, "misses": 2},
    }
    # After the outage the same client works again: a cache emptied meanwhile is refilled.
    outage_redis.flushall()
    service.fetch("team/app", digest)
    assert outage_redis.sismember("repository::team/app::blobs", digest)
    assert _tallies(service)["fetch"] == {"requests": 4, "hits": 1, "misses": 3}


def test_service_validates_before_anything_else(service: CachedBlobService) -> None:
    with pytest.raises(InvalidRepositoryNameError):
        service.fetch("../x", ABSENT)
    with pytest.raises(InvalidDigestError):
        service.exists("team/app", "sha256:short")
    assert service.figures.lookups()["fetch"]["requests"] == 0
