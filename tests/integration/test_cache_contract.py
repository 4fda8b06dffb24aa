"""The cache contract of :class:`~worker.cache.BlobDescriptorCache` on one Redis server, run for
every registry version: the ``version`` fixture (``tests/conftest.py``) is parametrized over
:class:`~worker.registry.versions.RegistryVersion`. The keys a write leaves, hits and misses,
clears, idempotent writes, and the round trips each costs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.support.redisdump import CountingConnection, dump
from tests.support.registry import free_port
from worker.cache import BlobDescriptorCache
from worker.config.settings import load_settings
from worker.core.clients import build_cache
from worker.errors import CacheError, CacheMissError, InvalidDigestError, InvalidRepositoryNameError
from worker.registry.descriptor import Descriptor
from worker.registry.versions import RegistryVersion

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
PATH_A = f"/docker/registry/v2/blobs/sha256/aa/{'a' * 64}/data"
DESC_A = Descriptor(A, 42, "application/octet-stream", PATH_A)
DESC_B = Descriptor(
    B, 7, "application/octet-stream", f"/docker/registry/v2/blobs/sha256/bb/{'b' * 64}/data"
)


def _global_fields(version: RegistryVersion, desc: Descriptor) -> dict[str, str]:
    fields: dict[str, str] = {}
    if version.has_descriptor:
        fields |= {"digest": desc.digest, "size": str(desc.size), "mediatype": desc.media_type}
    if version.has_layerinfo:
        fields |= {"path": desc.path or "", "length": str(desc.size)}
    return fields


def test_set_descriptor_in_a_repository_writes_exactly_the_registry_keys(
    cache: BlobDescriptorCache, cache_redis: redis.Redis, version: RegistryVersion
) -> None:
    cache.set_descriptor(DESC_A, "team/app")
    expected: dict[str, Any] = {
        "repository::team/app::blobs": [A],
        f"blobs::{A}": _global_fields(version, DESC_A),
    }
    if version.has_descriptor:
        expected[f"repository::team/app::blobs::{A}"] = {"mediatype": DESC_A.media_type}
    assert dump(cache_redis) == expected


def test_set_descriptor_without_a_repository_writes_only_the_global_hash(
    cache: BlobDescriptorCache, cache_redis: redis.Redis, version: RegistryVersion
) -> None:
    cache.set_descriptor(DESC_A)
    assert dump(cache_redis) == {f"blobs::{A}": _global_fields(version, DESC_A)}


def test_stat_hits_after_set_descriptor_and_misses_before(cache: BlobDescriptorCache) -> None:
    with pytest.raises(CacheMissError):
        cache.stat(A, "team/app")
    cache.set_descriptor(DESC_A, "team/app")
    found = cache.stat(A, "team/app")
    assert (found.digest, found.size, found.media_type) == (A, 42, DESC_A.media_type)
    assert cache.stat(A).size == 42


def test_stat_misses_in_a_repository_the_blob_is_not_a_member_of(
    cache: BlobDescriptorCache,
) -> None:
    cache.set_descriptor(DESC_A, "team/app")
    with pytest.raises(CacheMissError):
        cache.stat(A, "other/app")


def test_a_partial_descriptor_is_a_miss(
    cache: BlobDescriptorCache, cache_redis: redis.Redis, version: RegistryVersion
) -> None:
    cache.set_descriptor(DESC_A, "team/app")
    # Drop one field the schema needs: the lookup must treat the entry as absent.
    field = "size" if version.has_descriptor else "length"
    cache_redis.hdel(f"blobs::{A}", field)
    with pytest.raises(CacheMissError):
        cache.stat(A, "team/app")


def test_a_missing_repository_mediatype_is_a_miss_as_in_registry_3(
    cache: BlobDescriptorCache, cache_redis: redis.Redis, version: RegistryVersion
) -> None:
    cache.set_descriptor(DESC_A, "team/app")
    cache_redis.delete(f"repository::team/app::blobs::{A}")
    if version.has_descriptor:
        with pytest.raises(CacheMissError):
            cache.stat(A, "team/app")
    else:
        assert cache.stat(A, "team/app").size == 42  # 2.0 kept no per-repository hash


def test_the_global_mediatype_is_set_only_once_and_the_repository_one_overrides(
    cache: BlobDescriptorCache, cache_redis: redis.Redis, version: RegistryVersion
) -> None:
    if not version.has_descriptor:
        pytest.skip("the layerinfo schema keeps no media type")
    cache.set_descriptor(Descriptor(A, 42, "first/type", PATH_A), "one")
    cache.set_descriptor(Descriptor(A, 42, "second/type", PATH_A), "two")
    assert cache_redis.hget(f"blobs::{A}", "mediatype") == b"first/type"
    assert cache.stat(A, "two").media_type == "second/type"
    assert cache.stat(A).media_type == "first/type"


def test_contains_and_add_are_membership_only(
    cache: BlobDescriptorCache, cache_redis: redis.Redis
) -> None:
    assert not cache.contains("team/app", A)
    cache.add("team/app", A)
    assert cache.contains("team/app", A)
    assert dump(cache_redis) == {"repository::team/app::blobs": [A]}


def test_clear_in_a_repository_keeps_the_global_descriptor(
    cache: BlobDescriptorCache, cache_redis: redis.Redis, version: RegistryVersion
) -> None:
    cache.set_descriptor(DESC_A, "team/app")
    cache.set_descriptor(DESC_B, "team/app")
    cache.clear(A, "team/app")
    assert not cache.contains("team/app", A)
    assert cache.contains("team/app", B)
    assert cache.stat(A).size == 42
    assert f"repository::team/app::blobs::{A}" not in dump(cache_redis)


def test_clear_globally_removes_only_this_schemas_fields(
    cache: BlobDescriptorCache, cache_redis: redis.Redis, version: RegistryVersion
) -> None:
    cache.set_descriptor(DESC_A)
    cache_redis.hset(f"blobs::{A}", "foreign", "kept")
    cache.clear(A)
    with pytest.raises(CacheMissError):
        cache.stat(A)
    assert dump(cache_redis) == {f"blobs::{A}": {"foreign": "kept"}}


def test_writes_are_idempotent(cache: BlobDescriptorCache, cache_redis: redis.Redis) -> None:
    cache.set_descriptors([DESC_A, DESC_B], "team/app")
    once = dump(cache_redis)
    cache.set_descriptors([DESC_A, DESC_B], "team/app")
    assert dump(cache_redis) == once


def test_stat_many_answers_in_order_with_none_for_misses(cache: BlobDescriptorCache) -> None:
    cache.set_descriptor(DESC_B, "team/app")
    found = cache.stat_many([A, B], "team/app")
    assert found[0] is None
    assert found[1] is not None
    assert found[1].size == 7


def test_public_methods_validate_before_touching_redis(cache: BlobDescriptorCache) -> None:
    with pytest.raises(InvalidRepositoryNameError):
        cache.add("Bad Name", A)
    with pytest.raises(InvalidDigestError):
        cache.stat("sha256:nope", "team/app")
    with pytest.raises(InvalidDigestError):
        cache.set_descriptor(Descriptor("md5:x", 1, path="/x"), "team/app")


@pytest.fixture
def counting_cache(
    redis_proc: Any, cache_redis: redis.Redis, version: RegistryVersion
) -> Iterator[BlobDescriptorCache]:
    pool = redis.ConnectionPool(
        host=redis_proc.host, port=redis_proc.port, connection_class=CountingConnection
    )
    client = redis.Redis(connection_pool=pool)
    client.ping()  # open the connection outside the count
    cache = BlobDescriptorCache(client, version)
    # The scripts loaded outside the count too: a script the server does not hold yet costs
    # two more round trips the first time (NOSCRIPT, then SCRIPT LOAD), once per server, so
    # the count would depend on which test ran first.
    cache.stat_many([A], "team/app")
    cache.set_descriptor(DESC_A, "team/app")
    cache_redis.flushdb()
    CountingConnection.sent = 0
    yield cache
    client.close()


def test_a_hit_costs_one_round_trip(counting_cache: BlobDescriptorCache) -> None:
    counting_cache.set_descriptor(DESC_A, "team/app")
    CountingConnection.sent = 0
    counting_cache.stat(A, "team/app")
    assert CountingConnection.sent == 1


def test_writing_one_blob_costs_one_round_trip(counting_cache: BlobDescriptorCache) -> None:
    counting_cache.set_descriptor(DESC_A, "team/app")
    assert CountingConnection.sent == 1


def test_a_batch_costs_one_round_trip_to_read_and_one_to_write(
    counting_cache: BlobDescriptorCache,
) -> None:
    batch = [Descriptor(f"sha256:{i:064x}", i, path=f"/p/{i}") for i in range(500)]
    counting_cache.set_descriptors(batch, "team/app")
    assert all(counting_cache.stat_many([d.digest for d in batch], "team/app"))
    assert CountingConnection.sent == 2


def test_an_unreachable_redis_raises_cache_error(version: RegistryVersion) -> None:
    settings = load_settings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", registry_version=version.value
    )
    cache = build_cache(settings)
    assert cache.version is version
    with pytest.raises(CacheError, match="cache Redis"):
        cache.stat(A, "team/app")
    with pytest.raises(CacheError):
        cache.set_descriptor(DESC_A, "team/app")


def test_described_blobs_get_membership_and_repository_hash_only(
    cache: BlobDescriptorCache, cache_redis: redis.Redis, version: RegistryVersion
) -> None:
    cache.set_descriptors([DESC_A, DESC_B], "team/app", described={A})
    keys = dump(cache_redis)
    assert keys["repository::team/app::blobs"] == [A, B]
    assert f"blobs::{A}" not in keys
    assert keys[f"blobs::{B}"] == _global_fields(version, DESC_B)
    if version.has_descriptor:
        assert f"repository::team/app::blobs::{A}" in keys


def test_membership_of_a_large_batch_is_complete(
    cache: BlobDescriptorCache, cache_redis: redis.Redis
) -> None:
    # Over the script's 1000-member SADD chunk, with a remainder.
    batch = [Descriptor(f"sha256:{i:064x}", i, path=f"/p/{i}") for i in range(2345)]
    cache.set_descriptors(batch, "team/app")
    assert cache_redis.scard("repository::team/app::blobs") == 2345
    assert all(d is not None for d in cache.stat_many([d.digest for d in batch], "team/app"))
