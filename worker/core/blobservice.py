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
from collections.abc import Mapping, MutableMapping, Sequence

from worker.cache import BlobDescriptorCache
from worker.core.results import FetchResult, forget_sizes, mark_lost, pair_answers
from worker.core.writes import CacheWriter
from worker.errors import BlobNotFoundError, CacheError, RecheckError, StateError, StoreError
from worker.registry import reference
from worker.registry.descriptor import Descriptor
from worker.state.figures import Figures
from worker.state.unchecked import UncheckedWrites
from worker.storage import Store
from worker.storage.base import stat_or_error

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
        return self.fetch_groups(
            {repository: digests},
            strict=strict,
            sizes=sizes,
            manifests=manifests,
            listed=listed,
            recheck_hits=recheck_hits,
        )[repository]

    def fetch_groups(
        self,
        groups: Mapping[str, Sequence[str]],
        *,
        strict: bool = False,
        sizes: MutableMapping[str, int] | None = None,
        manifests: bool = False,
        listed: MutableMapping[str, int] | None = None,
        recheck_hits: bool = False,
    ) -> dict[str, list[FetchResult]]:
        """:meth:`fetch_many` of several repositories (repository to digests): one cache round
        trip to read them all and one to write, whatever their number (a walk of many small
        repositories pays per batch, not per repository)."""
        cached = self._read_groups(groups, strict=strict)
        results: dict[str, list[FetchResult]] = {}
        fills: dict[str, list[Descriptor]] = {}
        also: dict[str, list[str]] = {}
        described: dict[str, frozenset[str]] = {}
        for repository, digests in groups.items():
            found = cached[repository]
            hits = sum(desc is not None for desc in found)
            self.figures.fetch.hit(hits)
            self.figures.fetch.miss(len(digests) - hits)
            missed = [d for d, desc in zip(digests, found, strict=True) if desc is None]
            # Taken before the store adds this batch: what earlier batches described and wrote.
            described[repository] = frozenset(d for d in missed if sizes and d in sizes)
            resolved: list[Descriptor | StoreError] = []
            if missed and listed is not None:
                resolved = self.store.fetch_listed(
                    repository, missed, sizes, manifests=manifests, seen=listed
                )
            elif missed:
                resolved = self.store.fetch_many(repository, missed, sizes, manifests=manifests)
            results[repository], fills[repository] = pair_answers(digests, found, resolved)
            if recheck_hits:
                also[repository] = [r.digest for r in results[repository] if r.hit]
        return self._fill(
            results,
            fills,
            also,
            described,
            strict=strict,
            sizes=sizes,
            manifests=manifests,
            seen=listed,
        )

    def _read_groups(
        self, groups: Mapping[str, Sequence[str]], *, strict: bool
    ) -> dict[str, list[Descriptor | None]]:
        try:
            return self.cache.stat_groups(groups)
        except CacheError as exc:
            if strict:
                raise
            _log.error("error fetching blobs of %d repositories from cache: %s", len(groups), exc)
            return {r: [None] * len(d) for r, d in groups.items()}

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
        if pushed and self.cache.version.manifests_are_members:
            return self.warm_many(repository, digests, manifests=True)
        return self.fetch_manifest_groups(
            {repository: digests},
            strict=strict or pushed,
            listed=listed,
            recheck_hits=recheck_hits,
        )[repository]

    def fetch_manifest_groups(
        self,
        groups: Mapping[str, Sequence[str]],
        *,
        strict: bool = False,
        listed: MutableMapping[str, int] | None = None,
        recheck_hits: bool = False,
    ) -> dict[str, list[FetchResult]]:
        """:meth:`fetch_manifests` of several repositories, in one cache round trip each way.

        On 2.x (global descriptors only, not one of the original's counted operations) a
        manifest the cache misses is resolved through its revision link when ``listed`` (a
        walk's) is given, else by its data alone.
        """
        if self.cache.version.manifests_are_members:
            return self.fetch_groups(
                groups, strict=strict, manifests=True, listed=listed, recheck_hits=recheck_hits
            )
        cached = iter(self._read([d for ds in groups.values() for d in ds], None, strict=strict))
        results: list[FetchResult] = []
        fill: list[Descriptor] = []
        for repository, digests in groups.items():
            found = [next(cached) for _ in digests]
            missed = [d for d, desc in zip(digests, found, strict=True) if desc is None]
            resolved = (
                [stat_or_error(self.store.stat, d) for d in missed]
                if listed is None
                else self.store.fetch_listed(repository, missed, manifests=True, seen=listed)
                if missed
                else []
            )
            answered, found_fill = pair_answers(digests, found, resolved)
            results += answered
            fill += found_fill
        hits = [r.digest for r in results if r.hit] if recheck_hits else []
        filled = iter(self._fill({"": results}, {"": fill}, {"": hits}, {}, strict=strict)[""])
        return {r: [next(filled) for _ in digests] for r, digests in groups.items()}

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
        for repository, found_results in results.items():
            error = BlobNotFoundError(f"deleted from {repository} while it was being warmed")
            results[repository] = mark_lost(found_results, gone.get(repository, set()), error)
        # Counted once all of it succeeded: a batch that raises is tried again smaller.
        for repository, found in cached.items():
            hit_count = sum(desc is not None for desc in found)
            tally = (figures[repository] if figures is not None else self.figures).fetch
            tally.hit(hit_count)
            tally.miss(len(found) - hit_count)
        return results

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

    def _fill(
        self,
        results: dict[str, list[FetchResult]],
        fills: Mapping[str, list[Descriptor]],
        also: Mapping[str, Sequence[str]],
        described: Mapping[str, frozenset[str]],
        *,
        strict: bool,
        sizes: MutableMapping[str, int] | None = None,
        manifests: bool = False,
        seen: MutableMapping[str, int] | None = None,
    ) -> dict[str, list[FetchResult]]:
        # Fill the cache with what the store found ("": global descriptors only), then mark
        # what is not warm after all, with why: deleted meanwhile, or a re-check the store did
        # not answer (the write was undone; the caller counts it as an error).
        if not any(fills.values()) and not any(also.values()):
            return results
        try:
            if "" in fills:
                gone = {"": self.writer.write(fills[""], None, also=also.get("", ()))}
            else:
                gone = self.writer.write_groups(
                    fills, also=also, described=described, manifests=manifests, seen=seen
                )
        except (CacheError, StateError, StoreError) as exc:
            # Undone: the repositories a re-check error names, when it names them, else all.
            failed = exc.failed if isinstance(exc, RecheckError) else frozenset(results)
            for r in failed:
                forget_sizes(sizes, (desc.digest for desc in fills.get(r, ())))  # not written
            if strict and isinstance(exc, StoreError):  # a re-check left unanswered
                for r, found in results.items():
                    if r in failed:
                        undone = {*(desc.digest for desc in fills.get(r, ())), *also.get(r, ())}
                        results[r] = mark_lost(found, undone, exc)
                    elif lost := exc.gone.get(r) if isinstance(exc, RecheckError) else None:
                        results[r] = mark_lost(found, lost, BlobNotFoundError(f"deleted from {r}"))
                return results
            if strict:  # the cache, or the journal of its writes
                raise
            # A cache write after a store answer must never fail the request it serves.
            _log.error("error writing to cache (the write was undone or not made): %s", exc)
            return results
        for repository, lost in gone.items():
            forget_sizes(sizes, lost)
            where = f" from {repository}" if repository else ""
            error = BlobNotFoundError(f"deleted{where} while it was being warmed")
            results[repository] = mark_lost(results[repository], lost, error)
        return results

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
