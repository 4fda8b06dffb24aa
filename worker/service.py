"""The cached blob service: the Python counterpart of distribution 2.0's ``cachedLayerService``.

``exists`` and ``fetch`` ask the cache first and fall back to the store, with the original's
semantics kept:

- a cache error is logged and treated as a miss: a Redis outage never fails a request that the
  store can answer;
- only positive existence is cached;
- a fetch miss adds membership, takes the data path from the store's answer (no second stat)
  and sets the descriptor; these writes are side effects, so their failures are logged, never
  raised;
- Exists and Fetch each count Requests, Hits and Misses exactly where the original counts them.

Warming a blob is one cached ``fetch``. ``fetch_many`` is the same for a batch, in one cache
round trip to read and one to write, with the same counts as one ``fetch`` per digest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from worker import reference
from worker.cache import BlobDescriptorCache
from worker.counters import Counters
from worker.descriptor import Descriptor
from worker.errors import CacheError, StoreError
from worker.store import FilesystemStore

__all__ = ["CachedBlobService", "FetchResult"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FetchResult:
    """One digest of a batch fetch: its descriptor, or the store's error, and whether it hit."""

    digest: str
    descriptor: Descriptor | None
    error: StoreError | None
    hit: bool


class CachedBlobService:
    """Blob lookups of one store through one cache, counting hits and misses."""

    def __init__(
        self,
        cache: BlobDescriptorCache,
        store: FilesystemStore,
        counters: Counters | None = None,
    ) -> None:
        self.cache = cache
        self.store = store
        self.counters = counters if counters is not None else Counters()

    def exists(self, repository: str, digest: str) -> bool:
        """True when ``digest`` is a blob of ``repository``: from the cache, else the store."""
        reference.repository_name(repository)
        reference.digest(digest)
        return self._exists(repository, digest)

    def _exists(self, repository: str, digest: str) -> bool:
        try:
            if self.cache.contains(repository, digest):
                self.counters.exists.hit()
                return True
        except CacheError as exc:
            _log.error("error checking availability of %s@%s: %s", repository, digest, exc)
        self.counters.exists.miss()
        exists = self.store.exists(repository, digest)
        if exists:  # only positive existence is cached
            self._side_effect(self.cache.add, repository, digest)
        return exists

    def fetch(self, repository: str, digest: str) -> Descriptor:
        """The descriptor of a blob of ``repository``; raise BlobNotFoundError when absent."""
        reference.repository_name(repository)
        reference.digest(digest)
        result = self._fetch_many(repository, [digest])[0]
        if result.error is not None:
            raise result.error
        assert result.descriptor is not None  # no error means a descriptor
        return result.descriptor

    def fetch_many(
        self, repository: str, digests: Sequence[str], *, strict: bool = False
    ) -> list[FetchResult]:
        """Fetch a batch of blobs of one repository; store errors are returned, not raised.

        With ``strict``, a cache error is raised instead of logged: for a warm run, whose
        purpose is the cache write, not the answer.
        """
        reference.repository_name(repository)
        for d in digests:
            reference.digest(d)
        return self._fetch_many(repository, digests, strict=strict)

    def _fetch_many(
        self, repository: str, digests: Sequence[str], *, strict: bool = False
    ) -> list[FetchResult]:
        try:
            cached = self.cache.stat_many(digests, repository)
        except CacheError as exc:
            if strict:
                raise
            _log.error(
                "error fetching %d blobs of %s from cache: %s", len(digests), repository, exc
            )
            cached = [None] * len(digests)
        results: list[FetchResult] = []
        fill: list[Descriptor] = []
        for d, desc in zip(digests, cached, strict=True):
            if desc is not None:
                self.counters.fetch.hit()
                results.append(FetchResult(d, desc, None, hit=True))
                continue
            self.counters.fetch.miss()
            try:
                found = self.store.fetch(repository, d)
            except StoreError as exc:
                results.append(FetchResult(d, None, exc, hit=False))
                continue
            fill.append(found)
            results.append(FetchResult(d, found, None, hit=False))
        if fill:
            if strict:
                self.cache.set_descriptors(fill, repository)
            else:
                self._side_effect(self.cache.set_descriptors, fill, repository)
        return results

    def stat_many(self, digests: Sequence[str], *, strict: bool = False) -> list[FetchResult]:
        """Global descriptors (no repository scope), cache first; fills what the store knows.

        This is what a registry leaves for the manifests it serves: a ``blobs::<digest>`` hash
        and no membership. It is not one of the original's counted operations.
        """
        for d in digests:
            reference.digest(d)
        try:
            cached = self.cache.stat_many(digests)
        except CacheError as exc:
            if strict:
                raise
            _log.error("error fetching %d descriptors from cache: %s", len(digests), exc)
            cached = [None] * len(digests)
        results: list[FetchResult] = []
        fill: list[Descriptor] = []
        for d, desc in zip(digests, cached, strict=True):
            if desc is not None:
                results.append(FetchResult(d, desc, None, hit=True))
                continue
            try:
                found = self.store.stat(d)
            except StoreError as exc:
                results.append(FetchResult(d, None, exc, hit=False))
                continue
            fill.append(found)
            results.append(FetchResult(d, found, None, hit=False))
        if fill:
            if strict:
                self.cache.set_descriptors(fill)
            else:
                self._side_effect(self.cache.set_descriptors, fill, None)
        return results

    def _side_effect(self, write: Callable[..., None], *args: object) -> None:
        # A cache write after a store answer must never fail the request it serves.
        try:
            write(*args)
        except CacheError as exc:
            _log.error("error writing to cache (%s): %s", write.__name__, exc)
