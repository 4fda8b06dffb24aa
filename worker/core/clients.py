"""Building the warmer's clients from its settings, explicitly: no module-level clients."""

from __future__ import annotations

import redis

from worker.cache import BlobDescriptorCache
from worker.config.connections import connect
from worker.config.settings import Settings
from worker.core.blobservice import CachedBlobService
from worker.errors import ConfigError
from worker.state import StateStore
from worker.storage import Store
from worker.storage.filesystem import FilesystemStore
from worker.storage.s3 import S3Store

__all__ = [
    "build_cache",
    "build_service",
    "build_state",
    "build_store",
    "cache_redis",
    "state_redis",
]


def cache_redis(settings: Settings) -> redis.Redis:
    """A client of the registry's cache Redis (``WARMER_REDIS_URL``)."""
    return connect(settings.redis_url, settings.redis_timeout)


def state_redis(settings: Settings) -> redis.Redis:
    """A client of the warmer's own Redis (``WARMER_STATE_URL``)."""
    return connect(settings.state_url, settings.redis_timeout)


def build_state(settings: Settings) -> StateStore:
    """The warmer's own state store."""
    return StateStore(
        state_redis(settings), seen_ttl=settings.dedup_ttl, deadletter_max=settings.deadletter_max
    )


def build_cache(settings: Settings) -> BlobDescriptorCache:
    """The registry's cache, as the configured registry version fills it."""
    return BlobDescriptorCache(cache_redis(settings), settings.registry_version)


def build_store(settings: Settings) -> Store:
    """The registry's storage; raise ConfigError when none is configured."""
    target = settings.storage
    if target is None:
        raise ConfigError(
            "no storage configured: set WARMER_STORAGE_URL (s3://BUCKET/ROOTDIRECTORY or "
            "file:///PATH), WARMER_STORAGE_ROOT, or WARMER_REGISTRY_CONFIG"
        )
    if target.driver == "filesystem":
        return FilesystemStore(target.root)
    return S3Store(
        target.bucket,
        target.root,
        region=target.region or settings.aws_region,
        endpoint=target.endpoint,
        access_key=target.access_key,
        secret_key=target.secret_key,
        path_style=target.path_style,
        verify=target.verify,
    )


def build_service(settings: Settings) -> CachedBlobService:
    """The cached blob service over the configured cache and store."""
    journal = build_state(settings).unchecked
    return CachedBlobService(build_cache(settings), build_store(settings), journal=journal)
