"""The cached blob service: the Python counterpart of distribution 2.0's ``cachedLayerService``.

``exists`` and ``fetch`` ask the cache first and fall back to the store, with the original's
semantics kept:

- a cache error is logged and treated as a miss: a Redis outage never fails a request that the
  store can answer;
- only positive existence is cached;
- a fetch miss adds membership, takes the data path from the store's answer (no second stat)
  and sets the descriptor; these writes are side effects, so their failures are logged, never
  raised;
- every write goes through :class:`~worker.core.writes.CacheWriter`, which asks the store
  again after writing and forgets what a delete removed meanwhile (a delete always wins);
- Exists and Fetch each count Requests, Hits and Misses exactly where the original counts them.

Warming a blob is one cached ``fetch``. ``fetch_many`` is the same for a batch, in one cache
round trip to read and one to write, with the same counts as one ``fetch`` per digest.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, MutableMapping, Sequence

from worker.cache import BlobDescriptorCache
from worker.core.results import FetchResult, pair_answers
from worker.core.writes import CacheWriter
from worker.errors import BlobNotFoundError, CacheError, StateError, StoreError
from worker.registry import reference
from worker.registry.descriptor import Descriptor
from worker.state.figures import Figures
from worker.state.unchecked import UncheckedWrites
from worker.storage import Store

__all__ = ["CachedBlobService"]

_log = logging.getLogger(__name__)


class CachedBlobService:
    """Blob lookups of one store through one cache, counting hits and misses."""

    def __init__(
        self,
        cache: BlobDescriptorCache,
        store: Store,
        figures: Figures | None = None,
        journal: UncheckedWrites | None = None,
    ) -> None:
        self.cache = cache
        self.store = store
        self.figures = figures if figures is not None else Figures()
        self.writer = CacheWriter(cache, store, journal)

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
            try:
                return self.writer.add(repository, digest)  # False: deleted meanwhile
            except (CacheError, StateError, StoreError) as exc:
                # A cache write after a store answer must never fail the request it serves.
                _log.error("error writing to cache (add): %s", exc)
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
        recheck_hits: bool = False,
    ) -> list[FetchResult]:
        """Fetch a batch of blobs of one repository; store errors are returned, not raised.

        ``recheck_hits``: ask the store about the cache's hits too, and forget what is gone: for
        a run retried after a try that may have died between a write and its re-check.

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
            manifests=manifests,
            seen=listed,
            recheck_hits=recheck_hits,
        )

    def fetch_manifests(
        self,
        repository: str,
        digests: Sequence[str],
        *,
        strict: bool = False,
        pushed: bool = False,
        listed: MutableMapping[str, int] | None = None,
        recheck_hits: bool = False,
    ) -> list[FetchResult]:
        """What a pull of these manifests of ``repository`` leaves in the registry's cache.

        Registry 3.x caches a manifest in its repository as it caches a blob (membership, the
        global descriptor, the repository media type); 2.x keeps only the global descriptor.
        ``pushed``: warming a push (strict), where a delete of the same manifest must win.
        ``recheck_hits``: as in :meth:`fetch_many`.
        """
        if not self.cache.version.manifests_are_members:
            walk = None if listed is None else (repository, listed)
            return self.stat_many(
                digests, strict=strict or pushed, listed=walk, recheck_hits=recheck_hits
            )
        if pushed:
            return self.warm_many(repository, digests, manifests=True)
        return self.fetch_many(
            repository,
            digests,
            strict=strict,
            manifests=True,
            listed=listed,
            recheck_hits=recheck_hits,
        )

    def warm_many(
        self,
        repository: str,
        digests: Sequence[str],
        *,
        manifests: bool = False,
    ) -> list[FetchResult]:
        """Warm blobs of one repository for pushes: :meth:`fetch_many` (strict), deletes winning.

        A push and a delete of the same blob, handled by two workers, can interleave: the push
        reads the link, the delete forgets the digest, then the push writes the membership.
        The writer (:class:`~worker.core.writes.CacheWriter`) asks the store again after
        writing and forgets what is gone. Hits are re-checked too: a push retried after a try
        that wrote and died before its check finds its own entry as a hit. A digest not found
        at all is forgotten, so a retried push converges the same way.
        """
        return self.warm_groups({repository: digests}, manifests=manifests)[repository]

    def warm_groups(
        self,
        groups: Mapping[str, Sequence[str]],
        figures: Mapping[str, Figures] | None = None,
        *,
        manifests: bool = False,
    ) -> dict[str, list[FetchResult]]:
        """:meth:`warm_many` of several repositories (repository to digests) at once: one cache
        read and one cache write for them all. Each repository's lookups count in its own
        ``figures`` when given, else in this service's, once all of it has succeeded.

        Every repository's re-check runs even when another's raises (the first error is raised
        after them all): the write covered them all, so each needs its check.
        """
        cached = self.cache.stat_groups(groups)  # strict: a warm is for the cache's sake
        results: dict[str, list[FetchResult]] = {}
        fills: dict[str, list[Descriptor]] = {}
        hits: dict[str, list[str]] = {}
        missing: dict[str, list[str]] = {}
        for repository, digests in groups.items():
            found = cached[repository]
            missed = [d for d, desc in zip(digests, found, strict=True) if desc is None]
            resolved = (
                self.store.fetch_many(repository, missed, manifests=manifests) if missed else []
            )
            results[repository], fills[repository] = pair_answers(digests, found, resolved)
            hits[repository] = [r.digest for r in results[repository] if r.hit]
            # Not found at all: forgotten too (an entry a failed earlier try may have left).
            missing[repository] = [
                r.digest for r in results[repository] if isinstance(r.error, BlobNotFoundError)
            ]
        gone = self.writer.write_groups(fills, also=hits, manifests=manifests)
        for repository, digests in missing.items():
            self.writer.forget(repository, digests)
        deleted = BlobNotFoundError
        for repository, found_results in results.items():
            lost = gone.get(repository, set())
            error = deleted(f"deleted from {repository} while it was being warmed")
            results[repository] = [
                r._replace(descriptor=None, error=error, hit=False) if r.digest in lost else r
                for r in found_results
            ]
        # Counted once all of it succeeded: a batch that raises is tried again smaller.
        for repository, found in cached.items():
            hit_count = sum(desc is not None for desc in found)
            tally = (figures[repository] if figures is not None else self.figures).fetch
            tally.hit(hit_count)
            tally.miss(len(found) - hit_count)
        return results

    def stat_many(
        self,
        digests: Sequence[str],
        *,
        strict: bool = False,
        listed: tuple[str, MutableMapping[str, int]] | None = None,
        recheck_hits: bool = False,
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
            recheck_hits=recheck_hits,
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
        manifests: bool = False,
        seen: MutableMapping[str, int] | None = None,
        recheck_hits: bool = False,
    ) -> list[FetchResult]:
        # Put the cache's hits and the store's answers for the misses back in order, and
        # fill the cache with what the store found (what a delete took meanwhile is forgotten).
        results, fill = pair_answers(digests, cached, resolved)
        hits = [r.digest for r in results if r.hit] if recheck_hits else []
        if not fill and not hits:
            return results
        lost = self._fill(
            fill,
            repository,
            described,
            strict=strict,
            sizes=sizes,
            manifests=manifests,
            seen=seen,
            also=hits,
        )
        if not lost:
            return results
        return [
            r._replace(descriptor=None, error=error, hit=False)
            if (error := lost.get(r.digest))
            else r
            for r in results
        ]

    def _fill(
        self,
        fill: list[Descriptor],
        repository: str | None,
        described: frozenset[str],
        *,
        strict: bool,
        sizes: MutableMapping[str, int] | None,
        manifests: bool,
        seen: MutableMapping[str, int] | None,
        also: Sequence[str] = (),
    ) -> dict[str, StoreError]:
        # The digests that are not warm after all, with why: deleted meanwhile, or a re-check
        # the store did not answer (the write was undone; the caller counts it as an error).
        try:
            gone = self.writer.write(
                fill, repository, described=described, manifests=manifests, seen=seen, also=also
            )
        except (CacheError, StateError, StoreError) as exc:
            _forget_sizes(sizes, (desc.digest for desc in fill))  # not written after all
            if strict and isinstance(exc, StoreError):  # a re-check left unanswered: undone
                return dict.fromkeys([*(desc.digest for desc in fill), *also], exc)
            if strict:  # the cache, or the journal of its writes
                raise
            # A cache write after a store answer must never fail the request it serves.
            _log.error("error writing to cache (the write was undone or not made): %s", exc)
            return {}
        _forget_sizes(sizes, gone)
        where = f" from {repository}" if repository else ""
        return {
            d: BlobNotFoundError(f"{d} was deleted{where} while it was being warmed") for d in gone
        }

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


def _forget_sizes(sizes: MutableMapping[str, int] | None, digests: Iterable[str]) -> None:
    # A run's memory of what it wrote: what was not written after all, or is gone, must be
    # written again by the next batch that meets it.
    if sizes is not None:
        for d in digests:
            sizes.pop(d, None)
