"""Building the warmer's clients from its settings, explicitly: no module-level clients."""

from __future__ import annotations

from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from worker.cache import BlobDescriptorCache
from worker.errors import ConfigError
from worker.service import CachedBlobService
from worker.settings import Settings
from worker.store import FilesystemStore

__all__ = ["build_cache", "build_service", "build_store", "cache_redis"]


def cache_redis(settings: Settings) -> redis.Redis:
    """A client of the registry's cache Redis.

    Short timeouts and a single immediate retry (for a pooled connection that a Redis restart
    closed): a cache that does not answer quickly is a miss, and the store answers instead.
    """
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


def build_cache(settings: Settings) -> BlobDescriptorCache:
    """The registry's cache, in the configured schema."""
    return BlobDescriptorCache(cache_redis(settings), settings.cache_schema)


def build_store(settings: Settings) -> FilesystemStore:
    """The registry's storage; raise ConfigError when no root is configured."""
    root: Path | None = settings.storage_root
    if root is None:
        raise ConfigError(
            "WARMER_STORAGE_ROOT is not set: give the registry's storage.filesystem.rootdirectory"
        )
    return FilesystemStore(root)


def build_service(settings: Settings) -> CachedBlobService:
    """The cached blob service over the configured cache and store."""
    return CachedBlobService(build_cache(settings), build_store(settings))
