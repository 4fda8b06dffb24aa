"""The one write path into the registry's cache, where a delete always wins.

The repository membership (``repository::<name>::blobs``) is the registry's access check: while
it names a digest, the registry answers HEAD and GET of that blob in that repository without
reading the link. An entry written for a link that a delete has just removed would serve
deleted content. So every writer of a membership or a descriptor (events, retries, re-warm in
the foreground and fanned out, heal, ``warmer fetch``/``exists``, replays) writes through
:class:`CacheWriter`, and nothing else calls the cache's write methods (a test reads the source
to keep it so).

The rule: write, then ask the store again (links afresh, never from a walk's listing), then
forget whatever is gone now. Against any delete, whatever the interleaving:

- the delete (link removed, then its event handled, or garbage-collect, then reconcile) ends
  before the re-check: the re-check sees it and forgets;
- it ends after the re-check: its own handling, which clears, comes after the write.

A writer that dies between its write and its re-check (SIGKILL, out of memory) leaves entries
unchecked. Each write is noted in the state Redis before it begins and the note removed once
re-checked (:mod:`worker.state.unchecked`); :meth:`CacheWriter.sweep`, run by beat, re-checks
the notes of writers that died. Retried work re-checks its hits too (``also``).
A re-check that fails (an S3 503, an EIO) undoes the write and raises the store's error, which
is retryable: an unanswered re-check never settles the work. Undoing is always safe: the cache
is a cache, and a forgotten entry costs one store read at the next pull.

A re-warm on S3 holds its re-checks back (:meth:`CacheWriter.holding`) and does them together
once the writes of a key range its walk listed in one go are all made: one listing of that
range, made after them all, re-checks them all, where one a repository would list the range's
pages again for each. Held, a write's note stays open until its re-check.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Iterable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from itertools import groupby
from typing import Final, cast

from worker.cache import BlobDescriptorCache
from worker.core.heldchecks import Held, Rechecked, RechecksTogether
from worker.errors import BlobNotFoundError, CacheError, RecheckError, StateError, StoreError
from worker.registry.descriptor import Descriptor
from worker.state.unchecked import Note, UncheckedWrites
from worker.storage import Store

__all__ = [
    "HOLD_DIGESTS",
    "HOLD_WRITES",
    "SETTLE_PART",
    "SWEEP_AFTER_SECONDS",
    "CacheWriter",
    "Rechecked",
]

_log = logging.getLogger(__name__)

#: A write's note older than this belongs to a writer that died: a batch's write and re-check
#: take milliseconds to seconds (an S3 listing at worst), far under this.
SWEEP_AFTER_SECONDS: Final = 120.0
#: Held re-checks are done once this many digests, or writes, wait, wherever the walk is:
#: each write's note stays open until then, and the journal keeps MAX_NOTES for every writer.
#: (Seconds of a walk, under SWEEP_AFTER_SECONDS; a sweep meeting a held note checks it twice.)
HOLD_DIGESTS: Final = 10_000
HOLD_WRITES: Final = 100
#: ... and from half of that, as soon as the walk leaves a key range it listed in one go, so
#: that no range is listed again in two parts. Held over several ranges, the re-checks share
#: one merge with ``blobs/`` (2.x lists the data afresh: one merge a range would be many).
SETTLE_PART: Final = 2


class CacheWriter:
    """Writes descriptors and memberships of one store into one cache, deletes winning."""

    def __init__(
        self, cache: BlobDescriptorCache, store: Store, journal: UncheckedWrites | None = None
    ) -> None:
        self.cache = cache
        self.store = store
        #: Where writes are noted until re-checked; None: not noted (tests, one-off tools).
        self.journal = journal
        #: Writes whose re-check waits (a :meth:`holding` writer's); None: none is held.
        self._held: list[Held] | None = None
        self._scope: str | None = None
        self._seen: MutableMapping[str, int] = {}

    def add(self, repository: str, digest: str) -> bool:
        """Membership of ``digest`` in ``repository`` (``exists``); False when it was gone."""
        with self._noted({repository: [digest]}, manifests=False):
            self.cache.add(repository, digest)
            return not self._recheck({repository: [digest]}, manifests=False)[repository]

    def sweep(self, older_than: float = SWEEP_AFTER_SECONDS) -> int:
        """Re-check the writes of writers that died before their re-check; return how many.

        A note whose re-check fails (the store away) stays for the next sweep; the others are
        still swept (one bad note never blocks the rest).
        """
        if self.journal is None:
            return 0
        swept = 0
        notes = self.journal.older_than(older_than)
        # A note of several repositories comes as an entry each: all of them are re-checked
        # (one failing never keeps the others from theirs), and the note closed once all were.
        for note, parts in groupby(notes, key=lambda entry: entry[0]):
            error = self._recheck_note([part for _, part in parts])
            if error is not None:
                _log.warning("sweep: a note's writes stay unchecked: %s", error)
                self.journal.postpone(note)  # behind the others: a stuck note blocks no sweep
                continue
            self.journal.close(note)
            swept += 1
        return swept

    def _recheck_note(self, parts: list[Note]) -> StoreError | CacheError | None:
        # Every part of a note re-checked, whichever fails: the first error, or None.
        scoped: dict[str, list[str]] = {}
        unscoped: list[str] = []
        for repository, _, digests in parts:
            if repository:
                scoped.setdefault(repository, []).extend(digests)
            else:
                unscoped += digests
        errors: list[StoreError | CacheError] = []
        try:
            self._recheck(scoped, manifests=parts[0][1])  # every repository, then raises
        except (StoreError, CacheError) as exc:
            errors.append(exc)
        try:
            if unscoped:
                self._recheck_global(unscoped)
        except (StoreError, CacheError) as exc:
            errors.append(exc)
        return errors[0] if errors else None

    @contextmanager
    def _noted(self, groups: Mapping[str, Sequence[str]], *, manifests: bool) -> Iterator[None]:
        # Noted before the write, removed once its re-check is done. A writer that dies in
        # between, or whose re-check failed (the write undone, the note kept to be sure), leaves
        # the note for the sweep.
        notes = self._open(groups, manifests=manifests)
        yield
        self._close(notes)

    def _open(
        self, groups: Mapping[str, Sequence[str]], *, manifests: bool, apart: bool = False
    ) -> list[str]:
        # The journal is a safety net for killed writers only: with the state Redis away, the
        # write goes on unnoted (the re-check still runs), with a warning. One note for the
        # write, or (``apart``) one a repository, each closed on its own.
        if self.journal is None:
            return []
        parts = [{r: d} for r, d in groups.items() if d] if apart else [groups]
        try:
            return [self.journal.open_many(p, manifests=manifests) for p in parts]
        except StateError as exc:
            _log.warning("cache writes not noted (the state Redis): %s", exc)
            return []

    def _close(self, notes: list[str]) -> None:
        if self.journal is None or not notes:
            return
        try:
            self.journal.close(*notes)
        except StateError as exc:  # the sweep re-checks them once more: harmless
            _log.warning("checked writes' notes stay (the state Redis): %s", exc)

    def write(
        self,
        descriptors: Sequence[Descriptor],
        repository: str | None = None,
        *,
        described: Container[str] = (),
        manifests: bool = False,
        seen: MutableMapping[str, int] | None = None,
        also: Sequence[str] = (),
    ) -> set[str]:
        """Write ``descriptors`` (in ``repository``, or only their global hash), then re-check.

        Return the digests found gone and forgotten. ``described`` as in
        :meth:`BlobDescriptorCache.set_descriptors`; ``manifests``: the digests are manifests,
        live through a revision link too. ``seen``: given by a walk (its memory of blob
        sizes): the re-check lists (S3: the link folder, not two requests a blob), the links
        afresh; :meth:`_recheck` says where the data's answer comes from. ``also``: digests to
        re-check besides those written (a retried run's hits).

        A :meth:`holding` writer holds a walk's re-check back (``seen`` given): the write is
        made and noted, and nothing is found gone until :meth:`settle`.
        """
        if repository is not None:
            return self.write_groups(
                {repository: descriptors},
                also={repository: also},
                described={repository: described},
                manifests=manifests,
                seen=seen,
            )[repository]
        digests = list(dict.fromkeys([*(d.digest for d in descriptors), *also]))
        if not digests:
            return set()
        with self._noted({"": digests}, manifests=manifests):
            if descriptors:
                self.cache.set_descriptors(descriptors)
            return self._recheck_global(digests)

    def write_groups(
        self,
        groups: Mapping[str, Sequence[Descriptor]],
        *,
        also: Mapping[str, Sequence[str]] | None = None,
        described: Mapping[str, Container[str]] | None = None,
        manifests: bool = False,
        seen: MutableMapping[str, int] | None = None,
    ) -> dict[str, set[str]]:
        """:meth:`write` of several repositories in one cache round trip (and one of the
        journal's each way); ``also``: digests of each repository to re-check besides those
        written (a retried run's hits); ``described``: each repository's, as in :meth:`write`.

        Every repository's re-check runs even when another's raises (the first error is raised
        after them all): the one write covered them all, so each needs its check.
        """
        checks: dict[str, list[str]] = {r: [d.digest for d in b] for r, b in groups.items()}
        for repository, digests in (also or {}).items():
            checks.setdefault(repository, []).extend(digests)
        unique = {r: list(dict.fromkeys(d)) for r, d in checks.items() if d}
        if not unique:
            return {r: set() for r in checks}
        if self._held is not None and seen is not None:
            # Held: noted and queued before the write (a write that raises may still have been
            # made: its check is queued all the same), re-checked by :meth:`settle`.
            notes = iter(self._open(unique, manifests=manifests, apart=True))  # or none
            for repository, digests in unique.items():
                own = [note] if (note := next(notes, None)) else []
                self._held.append(Held(repository, digests, manifests, self._scope, own))
            self._seen = seen
            self.cache.set_descriptor_groups(groups, described)
            return {r: set() for r in checks}
        with self._noted(unique, manifests=manifests):
            self.cache.set_descriptor_groups(groups, described)
            gone = self._recheck(unique, manifests=manifests, seen=seen)
        return {r: gone.get(r, set()) for r in checks}

    def holding(self) -> CacheWriter | None:
        """A writer of the same cache, store and journal that holds a walk's re-checks back
        until :meth:`settle`, to do them together; None when the store re-checks one
        repository at a time only (a filesystem: a read and a stat a link, nothing to merge).
        """
        if getattr(self.store, "fetch_rechecked", None) is None:
            return None
        writer = CacheWriter(self.cache, self.store, self.journal)
        writer._held = []
        return writer

    def moving_to(self, repository: str, *, walked: bool) -> bool:
        """A walk goes on to ``repository`` (``walked``: its store walk just yielded it, as
        against a name given). True when the held re-checks are due first: enough of them
        wait, and the store listed ``repository`` apart from them (another key range), so
        that a later listing made for it would not answer for them too."""
        scope = None
        if walked:
            scope = cast(RechecksTogether, self.store).recheck_scope(repository)
        held = self._held or []
        self._scope = scope
        if not self._waiting(SETTLE_PART):
            return False
        # Without a scope a repository is listed on its own: only its own batches go along.
        last = held[-1]
        return (scope, scope or repository) != (last.scope, last.scope or last.repository)

    def due(self) -> bool:
        """True when the held re-checks should be done now, whatever the walk does next."""
        return self._waiting(1)

    def _waiting(self, part: int) -> bool:
        # At least a ``part``-th of the bound waits (writes or digests).
        held = self._held or []
        if not held:
            return False
        writes, digests = len(held), sum(len(h.digests) for h in held)
        return writes * part >= HOLD_WRITES or digests * part >= HOLD_DIGESTS

    def settle(self) -> Rechecked:
        """Re-check every held write together, from listings made now; forget what is gone.

        A write whose re-check the store did not answer is undone (forgotten whole) and keeps
        its note; a cache error is raised, and the writes not yet settled keep theirs: both are
        the sweep's. On 2.x the data is listed afresh too (see :meth:`_recheck`).
        """
        result = Rechecked()
        if not self._held:  # none held, or not a holding writer
            return result
        held, self._held = self._held, []
        fresh = self._seen if self.cache.version.collects_links else {}
        checks = [(h.repository, h.digests, h.manifests, h.scope) for h in held]
        answers = cast(RechecksTogether, self.store).fetch_rechecked(checks, seen=fresh)
        for h, found in zip(held, answers, strict=True):
            errors = [a for a in found if isinstance(a, StoreError) and _unanswered(a)]
            if errors:
                _log.warning(
                    "re-check of %d blobs of %s failed: %s", len(h.digests), h.repository, errors[0]
                )
                self.forget(h.repository, h.digests)
                result.failed.append((h.repository, h.digests, _retryable(errors[0])))
                continue
            gone = {
                d for d, a in zip(h.digests, found, strict=True) if isinstance(a, BlobNotFoundError)
            }
            if gone:
                self.forget(h.repository, gone)
                result.gone.append((h.repository, gone))
            self._close(h.notes)
        return result

    def forget(self, repository: str, digests: Iterable[str]) -> None:
        """What the registry's own delete clears, for a batch: the repository's entries, and
        the global descriptor of the digests whose data is gone too. Cache errors are raised."""
        batch = list(dict.fromkeys(digests))
        if not batch:
            return
        self.cache.clear_many(batch, repository)
        unstored = []
        for d in batch:
            try:
                self.store.stat(d)
            except StoreError:
                # Not found, or unknown (the store away): the global descriptor goes too. A
                # miss costs a stat; a stale descriptor would answer for data that is gone.
                unstored.append(d)
        if unstored:
            self.cache.clear_many(unstored)

    def _recheck(
        self,
        groups: Mapping[str, Sequence[str]],
        *,
        manifests: bool,
        seen: MutableMapping[str, int] | None = None,
    ) -> dict[str, set[str]]:
        gone: dict[str, set[str]] = {}
        failed: dict[str, StoreError] = {}
        for repository, digests in groups.items():
            if not digests:
                gone[repository] = set()
                continue
            # A walk's batch is listed, never asked link by link. Its data is taken from the
            # walk's sizes only where a garbage-collect that deletes data deletes its links too
            # (3.x): there, a link listed afresh says the data is there. On 2.x, whose GC leaves
            # the links of the data it deletes, the data is listed afresh too.
            fresh = seen if seen is None or self.cache.version.collects_links else {}
            answers = self.store.fetch_cached(repository, digests, manifests=manifests, seen=fresh)
            gone[repository] = {
                d for d, a in zip(digests, answers, strict=True) if isinstance(a, BlobNotFoundError)
            }
            errors = [a for a in answers if isinstance(a, StoreError) and _unanswered(a)]
            if errors:
                # Not answered: undo every entry of this group, then fail as retryable.
                _log.warning(
                    "re-check of %d blobs of %s failed: %s", len(digests), repository, errors[0]
                )
                gone[repository] = set(digests)
                failed[repository] = errors[0]
            if gone[repository]:
                self.forget(repository, gone[repository])
        if failed:
            # Says which repositories were undone: the others' writes stand, re-checked.
            first = _retryable(next(iter(failed.values())))
            found = {r: g for r, g in gone.items() if r not in failed}
            raise RecheckError(str(first), frozenset(failed), found) from first
        return gone

    def _recheck_global(self, digests: Sequence[str]) -> set[str]:
        answers = self.store.fetch_cached(None, digests)
        gone = {d for d, a in zip(digests, answers, strict=True) if isinstance(a, StoreError)}
        if gone:
            self.cache.clear_many(list(gone))
        errors = [a for a in answers if isinstance(a, StoreError) and _unanswered(a)]
        if errors:
            raise _retryable(errors[0])
        return {
            d for d, a in zip(digests, answers, strict=True) if isinstance(a, BlobNotFoundError)
        }


def _unanswered(error: StoreError) -> bool:
    # Not found is an answer; any other store error leaves the question open.
    return not isinstance(error, BlobNotFoundError)


def _retryable(error: StoreError) -> StoreError:
    # The re-check's question stays open: another try can answer it, whatever the error said.
    if error.retryable:
        return error
    return StoreError(f"re-check after a cache write failed: {error}")
