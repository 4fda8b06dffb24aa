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
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import NamedTuple

from worker.cache import BlobDescriptorCache
from worker.errors import BlobNotFoundError, CacheError, StoreError
from worker.registry import reference
from worker.registry.descriptor import Descriptor
from worker.state.figures import Figures
from worker.storage import Store

__all__ = ["CachedBlobService", "FetchResult"]

_log = logging.getLogger(__name__)


class FetchResult(NamedTuple):
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
        store: Store,
        figures: Figures | None = None,
    ) -> None:
        self.cache = cache
        self.store = store
        self.figures = figures if figures is not None else Figures()

    def exists(self, repository: str, digest: str) -> bool:
        """True when ``digest`` is a blob of ``repository``: from the cache, else the store."""
        reference.repository_name(repository)
        reference.digest(digest)
        return self._exists(repository, digest)

    def _exists(self, repository: str, digest: str) -> bool:
        try:
            if self.cache.contains(repository, digest):
                self.figures.exists.hit()
                return True
        except CacheError as exc:
            _log.error("error checking availability of %s@%s: %s", repository, digest, exc)
        self.figures.exists.miss()
        exists = self.store.exists(repository, digest)
        if exists:  # only positive existence is cached
            self._side_effect(self.cache.add, repository, digest)
        return exists

    def fetch(self, repository: str, digest: str) -> Descriptor:
        """The descriptor of a blob of ``repository``; raise BlobNotFoundError when absent."""
        reference.repository_name(repository)
        reference.digest(digest)
        result = self.fetch_many(repository, [digest])[0]
        if result.error is not None:
            raise result.error
        assert result.descriptor is not None  # no error means a descriptor
        return result.descriptor

    def fetch_many(
        self,
        repository: str,
        digests: Sequence[str],
        *,
        strict: bool = False,
        sizes: MutableMapping[str, int] | None = None,
        manifests: bool = False,
        listed: MutableMapping[str, int] | None = None,
    ) -> list[FetchResult]:
        """Fetch a batch of blobs of one repository; store errors are returned, not raised.

        ``listed`` (a re-warm's): the digests come from a walk of the store's links, which the
        store may describe from listings instead of one read a link (``Store.fetch_listed``);
        the mapping is the run's memory of the blob sizes those listings showed (bounded by the
        caller). Unlike ``sizes``, it says nothing of what the cache holds.

        ``manifests``: the digests are manifests, resolved through revision links as the
        registry's manifest store does (3.x caches them in the repository, as blobs).

        With ``strict``, a cache error is raised instead of logged: for a warm run, whose
        purpose is the cache write, not the answer.

        ``sizes`` is a run's memory of the blobs it already described (digest to size): the
        store does not stat them again, and their global descriptor is not written again,
        only membership and the repository hash. The caller bounds it.

        Names and digests are validated by the cache before any I/O (a walk's batches would
        pay twice for a check here).
        """
        cached = self._read(digests, repository, strict=strict)
        hits = sum(desc is not None for desc in cached)
        self.figures.fetch.hit(hits)
        self.figures.fetch.miss(len(digests) - hits)
        missed = [d for d, desc in zip(digests, cached, strict=True) if desc is None]
        # Taken before the store adds this batch: what earlier batches described and wrote.
        described = frozenset(d for d in missed if d in sizes) if sizes else frozenset()
        resolved: list[Descriptor | StoreError] = []
        if missed and listed is not None:
            resolved = self.store.fetch_listed(
                repository, missed, sizes, manifests=manifests, seen=listed
            )
        elif missed:
            resolved = self.store.fetch_many(repository, missed, sizes, manifests=manifests)
        return self._merge(
            digests,
            cached,
            resolved,
            repository=repository,
            described=described,
            strict=strict,
            sizes=sizes,
        )

    def fetch_manifests(
        self,
        repository: str,
        digests: Sequence[str],
        *,
        strict: bool = False,
        pushed: bool = False,
        listed: MutableMapping[str, int] | None = None,
    ) -> list[FetchResult]:
        """What a pull of these manifests of ``repository`` leaves in the registry's cache.

        Registry 3.x caches a manifest in its repository as it caches a blob (membership, the
        global descriptor, the repository media type); 2.x keeps only the global descriptor.
        ``pushed``: warming a push (strict), where a delete of the same manifest must win.
        """
        if not self.cache.version.manifests_are_members:
            if listed is None:
                return self.stat_many(digests, strict=strict or pushed)
            return self.stat_many(digests, strict=strict or pushed, listed=(repository, listed))
        if pushed:
            return self.warm_many(repository, digests, manifests=True)
        return self.fetch_many(repository, digests, strict=strict, manifests=True, listed=listed)

    def warm_many(
        self,
        repository: str,
        digests: Sequence[str],
        *,
        manifests: bool = False,
        recheck: bool = False,
    ) -> list[FetchResult]:
        """Warm blobs of one repository for pushes: :meth:`fetch_many` (strict), then a delete wins.

        A push and a delete of the same blob, handled by two workers, can interleave: the push
        reads the link, the delete forgets the digest, then the push writes the membership.
        The membership is the registry's access check, so that stale write would serve a deleted
        blob. Hence, after writing, the links are read again: a digest whose link is gone now is
        forgotten again. Whatever the interleaving, the last of the two to finish sees the link
        gone (the registry removes it before it notifies) and the membership ends gone. A digest
        not found at all is forgotten too, so a retried push converges the same way.

        ``recheck``: read the links of hits again too, for a push whose earlier try may have
        written its entry and failed before its own check (see :meth:`warm_groups`).
        """
        groups = {repository: digests}
        return self.warm_groups(groups, manifests=manifests, recheck=recheck)[repository]

    def warm_groups(
        self,
        groups: Mapping[str, Sequence[str]],
        figures: Mapping[str, Figures] | None = None,
        *,
        manifests: bool = False,
        recheck: bool = False,
    ) -> dict[str, list[FetchResult]]:
        """:meth:`warm_many` of several repositories (repository to digests) at once: one cache
        read and one cache write for them all. Each repository's lookups count in its own
        ``figures`` when given, else in this service's, once all of it has succeeded.

        Every repository's delete-wins check runs even when another's raises (the first error
        is raised after them all): the write covered them all, so each needs its check.
        """
        cached = self.cache.stat_groups(groups)  # strict: a warm is for the cache's sake
        results: dict[str, list[FetchResult]] = {}
        fills: dict[str, list[Descriptor]] = {}
        for repository, digests in groups.items():
            found = cached[repository]
            missed = [d for d, desc in zip(digests, found, strict=True) if desc is None]
            resolved = (
                self.store.fetch_many(repository, missed, manifests=manifests) if missed else []
            )
            results[repository], fills[repository] = _pair(digests, found, resolved)
        self.cache.set_descriptor_groups({r: f for r, f in fills.items() if f})
        failed: Exception | None = None
        for repository, found_results in results.items():
            try:
                results[repository] = self._delete_wins(
                    repository, found_results, manifests, recheck=recheck
                )
            except Exception as exc:  # raised below, once every check has run
                failed = failed or exc
        if failed is not None:
            raise failed
        # Counted once all of it succeeded: a batch that raises is tried again smaller.
        for repository, found in cached.items():
            hits = sum(desc is not None for desc in found)
            tally = (figures[repository] if figures is not None else self.figures).fetch
            tally.hit(hits)
            tally.miss(len(found) - hits)
        return results

    def _delete_wins(
        self, repository: str, results: list[FetchResult], manifests: bool, *, recheck: bool
    ) -> list[FetchResult]:
        # See warm_many: links read again after the write; what is gone now is forgotten.
        written = [r.digest for r in results if (recheck or not r.hit) and r.error is None]
        again = self.store.fetch_many(repository, written, manifests=manifests) if written else []
        deleted = {
            d for d, a in zip(written, again, strict=True) if isinstance(a, BlobNotFoundError)
        }
        missing = [r.digest for r in results if isinstance(r.error, BlobNotFoundError)]
        if deleted or missing:
            self._forget(repository, [*deleted, *missing])
        gone = BlobNotFoundError(f"deleted from {repository} while it was being warmed")
        return [
            r._replace(descriptor=None, error=gone) if r.digest in deleted else r for r in results
        ]

    def _forget(self, repository: str, digests: list[str]) -> None:
        # What evict does, for a batch: the repository's entries, and the global descriptor of
        # the digests whose data is gone too. Cache errors are raised: the event is retried.
        self.cache.clear_many(digests, repository)
        unstored = []
        for d in digests:
            try:
                self.store.stat(d)
            except BlobNotFoundError:
                unstored.append(d)
        if unstored:
            self.cache.clear_many(unstored)

    def stat_many(
        self,
        digests: Sequence[str],
        *,
        strict: bool = False,
        listed: tuple[str, MutableMapping[str, int]] | None = None,
    ) -> list[FetchResult]:
        """Global descriptors (no repository scope), cache first; fills what the store knows.

        This is what a registry leaves for the manifests it serves: a ``blobs::<digest>`` hash
        and no membership. It is not one of the original's counted operations. ``listed``: the
        digests are revisions a walk of that repository listed, and the run's memory of sizes
        (see ``fetch_many``).
        """
        cached = self._read(digests, None, strict=strict)
        resolved: list[Descriptor | StoreError] = []
        if listed is not None:
            missed = [d for d, desc in zip(digests, cached, strict=True) if desc is None]
            if missed:
                name, seen = listed
                resolved = self.store.fetch_listed(name, missed, manifests=True, seen=seen)
        for d, desc in zip(digests, cached, strict=True):
            if desc is None and listed is None:
                try:
                    resolved.append(self.store.stat(d))
                except StoreError as exc:
                    resolved.append(exc)
        return self._merge(
            digests,
            cached,
            resolved,
            repository=None,
            described=frozenset(),
            strict=strict,
            sizes=None,
        )

    def _read(
        self, digests: Sequence[str], repository: str | None, *, strict: bool
    ) -> list[Descriptor | None]:
        try:
            return self.cache.stat_many(digests, repository)
        except CacheError as exc:
            if strict:
                raise
            where = f" of {repository}" if repository else ""
            _log.error("error fetching %d blobs%s from cache: %s", len(digests), where, exc)
            return [None] * len(digests)

    def _merge(
        self,
        digests: Sequence[str],
        cached: list[Descriptor | None],
        resolved: list[Descriptor | StoreError],
        *,
        repository: str | None,
        described: frozenset[str],
        strict: bool,
        sizes: MutableMapping[str, int] | None,
    ) -> list[FetchResult]:
        # Put the cache's hits and the store's answers for the misses back in order, and
        # fill the cache with what the store found.
        results, fill = _pair(digests, cached, resolved)
        if fill:
            self._fill(fill, repository, described, strict=strict, sizes=sizes)
        return results

    def _fill(
        self,
        fill: list[Descriptor],
        repository: str | None,
        described: frozenset[str],
        *,
        strict: bool,
        sizes: MutableMapping[str, int] | None,
    ) -> None:
        try:
            self.cache.set_descriptors(fill, repository, described=described)
        except CacheError as exc:
            if sizes is not None:  # not written after all: the next batch must write them
                for desc in fill:
                    sizes.pop(desc.digest, None)
            if strict:
                raise
            # A cache write after a store answer must never fail the request it serves.
            _log.error("error writing to cache (set_descriptors): %s", exc)

    def evict(self, repository: str, digest: str) -> bool:
        """Forget ``digest`` in ``repository``; globally too once its data is gone from the store.

        Return True when the global descriptor was dropped. Cache errors are raised: an
        eviction that did not happen must be retried, not logged away.
        """
        reference.repository_name(repository)
        reference.digest(digest)
        self.cache.clear(digest, repository)
        try:
            self.store.stat(digest)
        except BlobNotFoundError:
            self.cache.clear(digest)
            return True
        return False

    def _side_effect(self, write: Callable[..., None], *args: object) -> None:
        # A cache write after a store answer must never fail the request it serves.
        try:
            write(*args)
        except CacheError as exc:
            _log.error("error writing to cache (%s): %s", write.__name__, exc)


def _pair(
    digests: Sequence[str],
    cached: list[Descriptor | None],
    resolved: list[Descriptor | StoreError],
) -> tuple[list[FetchResult], list[Descriptor]]:
    # The cache's hits and the store's answers for the misses, back in order; and what the
    # store found, for the cache.
    answers = iter(resolved)
    results: list[FetchResult] = []
    fill: list[Descriptor] = []
    for d, desc in zip(digests, cached, strict=True):
        if desc is not None:
            results.append(FetchResult(d, desc, None, hit=True))
            continue
        found = next(answers)
        if isinstance(found, StoreError):
            results.append(FetchResult(d, None, found, hit=False))
        else:
            fill.append(found)
            results.append(FetchResult(d, found, None, hit=False))
    return results, fill
