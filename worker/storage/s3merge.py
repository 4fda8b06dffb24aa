"""Merges of wanted digests with a sorted S3 listing: which have a link in a link folder
(``<folder>/<alg>/<hex>/link``), and the sizes of blobs (``blobs/<alg>/<hh>/<hex>/data``).

A listing is sorted by key, and a key spells its digest, so a batch of digests (sorted) is
merged with it page by page, as a merge join: a page of 1,000 keys answers every digest it
spans, and a long stretch without one wanted is skipped by starting the next request just
before the next digest (``StartAfter``). Every function takes the function that lists one page;
none sends a request itself.
"""

from __future__ import annotations

from collections.abc import Collection, MutableMapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Final

from worker.errors import StoreError
from worker.registry.reference import DIGEST_ALGORITHMS, HEX_DIGITS
from worker.storage.base import DEFAULT_MEMO_LIMIT as SEEN_LIMIT
from worker.storage.s3listing import ListPage

__all__ = ["SEEN_LIMIT", "blob_sizes", "links_among", "sizes_by_listing"]

# SEEN_LIMIT: sizes a listing page may add to a run's memo beyond the ones wanted, up to the
# bound its caller drops the memo at (a re-warm's, a reconcile's).

#: Keys a listing page holds (S3's default and largest).
_PAGE_KEYS: Final = 1000
#: A merge goes on in parallel when what is left of it looks longer than this many pages: below
#: it, pages one after another cost fewer requests than a lister per hex digit.
_PARALLEL_PAGES: Final = 4
_SPACE: Final = float(16**12)
_TINY: Final = 1 / _SPACE
_HEX_DIGITS: Final = frozenset(HEX_DIGITS)
_UNSORTED: Final = (
    "an S3 listing came out of key order: only general purpose buckets list in order (an "
    "S3 Express directory bucket does not), and a merge with one could miss what is there"
)


def sizes_by_listing(
    list_page: ListPage,
    blobs: str,
    digests: Collection[str],
    memo: MutableMapping[str, int],
    *,
    pool: Executor | None,
) -> None:
    """:func:`blob_sizes` of valid ``digests`` of any algorithms; ``blobs`` is the key of
    ``blobs/`` (with its slash)."""
    for algorithm, hexes in _by_algorithm(digests).items():
        blob_sizes(list_page, f"{blobs}{algorithm}/", algorithm, hexes, memo, pool=pool)


def _by_algorithm(digests: Collection[str]) -> dict[str, list[str]]:
    wanted: dict[str, set[str]] = {}
    for d in digests:
        algorithm, _, hex_ = d.partition(":")
        wanted.setdefault(algorithm, set()).add(hex_)
    return {a: sorted(h) for a, h in wanted.items()}


def blob_sizes(
    list_page: ListPage,
    base: str,
    algorithm: str,
    hexes: list[str],
    memo: MutableMapping[str, int],
    *,
    pool: Executor | None = None,
) -> None:
    """Put the sizes of the blobs ``hexes`` (sorted) in ``memo``, from ``blobs/<alg>/`` listed
    at ``base`` (keys ``hh/<hex>/data``). Other sizes a page shows go in too, up to SEEN_LIMIT:
    blobs are shared, so a later batch finds most of its sizes there without a request.

    Pages run on from one another, from the folder's first key to its last, except over a
    stretch that looks longer than a page (judged by the keys a page spanned): the next request
    starts just before the next digest wanted instead, so a gap costs no page. When what is
    left after a page looks longer than ``_PARALLEL_PAGES`` pages, it is listed on by one
    thread of ``pool`` per first hex digit.
    """
    merge = _Merge(list_page, base, algorithm, _BLOB_DATA, memo, pool)
    merge.run(base, hexes, _Stretch(0.0, 1.0))


def links_among(
    list_page: ListPage, folder: str, digests: Collection[str], *, pool: Executor | None
) -> set[str]:
    """The valid ``digests`` that have a link in the link folder whose key is ``folder`` (with
    its slash; keys ``<alg>/<hex>/link``), merged as :func:`blob_sizes` merges."""
    found: dict[str, int] = {}
    for algorithm, hexes in _by_algorithm(digests).items():
        base = f"{folder}{algorithm}/"
        merge = _Merge(list_page, base, algorithm, _LINK, found, pool)
        merge.run(base, hexes, _Stretch(0.0, 1.0))
    return set(found)


@dataclass(frozen=True)
class _Layout:
    """How a folder's keys spell a digest's hex: ``hh/<hex>/data`` or ``<hex>/link``."""

    nested: bool
    leaf: str

    def hex_of(self, rest: str, length: int) -> str | None:
        """The hex of a key below the folder, or None for a key of another kind.

        Only a digest's own spelling counts (``length`` hex digits, its folder its first two):
        then keys and hexes sort alike, which the merge relies on. A stray ``<hex>.bak/link``
        sorts before ``<hex>/link`` but its "hex" after it, and would hide it.
        """
        folder = ""
        if self.nested:
            folder, _, rest = rest.partition("/")
        hex_, _, tail = rest.partition("/")
        if tail != self.leaf or len(hex_) != length or not _HEX_DIGITS.issuperset(hex_):
            return None
        return hex_ if not self.nested or folder == hex_[:2] else None

    def before(self, hex_: str) -> str:
        """What sorts just before the key of ``hex_``, below the folder."""
        return f"{hex_[:2]}/{hex_}/{self.leaf[:-1]}" if self.nested else f"{hex_}/{self.leaf[:-1]}"


_BLOB_DATA: Final = _Layout(nested=True, leaf="data")
_LINK: Final = _Layout(nested=False, leaf="link")


@dataclass
class _Stretch:
    """Where a merge is in the digest space (0 to 1): what it listed last, where it ends, and
    the keys a unit of the space holds, once a page has shown it."""

    at: float
    end: float
    density: float | None = None
    after: str = ""  # the last key listed: a request with it runs on

    def far(self, to: float) -> bool:
        """True when ``to`` looks more than a page past what was listed last."""
        return self.density is not None and (to - self.at) * self.density > _PAGE_KEYS


@dataclass
class _Merge:
    """A merge of sorted hexes with a folder's listing: what it finds goes into ``memo`` (the
    size), and, for blob data, what else a page shows, up to SEEN_LIMIT."""

    list_page: ListPage
    base: str
    algorithm: str
    layout: _Layout
    memo: MutableMapping[str, int]
    pool: Executor | None

    def run(self, prefix: str, hexes: list[str], where: _Stretch) -> None:
        """Merge ``hexes`` with the keys under ``prefix``, from ``where`` on."""
        base, memo, i = self.base, self.memo, 0
        length = DIGEST_ALGORITHMS[self.algorithm]
        others = self.layout is _BLOB_DATA  # sizes are worth keeping; links are not
        while True:
            if i < len(hexes) and where.far(_place(hexes[i])):
                # Never back: a seek must not ask again for what a page already gave.
                start = max(base + self.layout.before(hexes[i]), where.after)
            elif i >= len(hexes) and (not others or where.density is None or where.far(where.end)):
                return  # all found, and the rest of the folder would cost pages
            else:
                start = where.after
            page = self.list_page(Prefix=prefix, **({"StartAfter": start} if start else {}))
            contents = page.get("Contents", [])
            listed: list[str] = []
            previous = start
            for obj in contents:
                if obj["Key"] <= previous:
                    raise StoreError(_UNSORTED)
                previous = obj["Key"]
                hex_ = self.layout.hex_of(obj["Key"][len(base) :], length)
                if hex_ is None:
                    continue
                listed.append(hex_)
                digest = f"{self.algorithm}:{hex_}"
                if others and (digest in memo or len(memo) < SEEN_LIMIT):
                    memo[digest] = obj["Size"]
                while i < len(hexes) and hexes[i] < hex_:
                    i += 1  # not in the store: the caller finds no size
                if i < len(hexes) and hexes[i] == hex_:
                    memo[digest] = obj["Size"]
                    i += 1
            if not contents or not page.get("IsTruncated"):
                return
            where.after = contents[-1]["Key"]
            if len(listed) > 1:
                spanned = _place(listed[-1]) - _place(listed[0])
                where.density = len(contents) / max(spanned, _TINY)
                where.at = _place(listed[-1])
            # Longer than _PARALLEL_PAGES pages to the last digest wanted: in parallel.
            left = (_place(hexes[-1]) - where.at) / _PARALLEL_PAGES if i < len(hexes) else 0.0
            if self.pool is not None and where.far(where.at + left):
                self._fan_out(hexes[i:], where)
                return

    def _fan_out(self, hexes: list[str], where: _Stretch) -> None:
        # One lister per first hex digit, on the pool; the one of the last key's runs on.
        assert self.pool is not None
        groups: dict[str, list[str]] = {}
        for hex_ in hexes:
            groups.setdefault(hex_[0], []).append(hex_)
        current = where.after[len(self.base) : len(self.base) + 1]
        one = _Merge(self.list_page, self.base, self.algorithm, self.layout, self.memo, None)
        futures = []
        for c, group in groups.items():
            first, end = int(c, 16) / 16, (int(c, 16) + 1) / 16
            stretch = (
                _Stretch(where.at, end, where.density, where.after)
                if c == current
                else _Stretch(first, end, where.density)
            )
            futures.append(self.pool.submit(one.run, self.base + c, group, stretch))
        errors = [f.exception() for f in futures]  # each waited for: none lists on after us
        for error in errors:
            if error is not None:
                raise error  # a StoreError of any lister is the merge's


def _place(hex_: str) -> float:
    """Where a digest's hex falls in the digest space, from 0 to 1 (0 for what is not hex)."""
    try:
        return int(hex_[:12].ljust(12, "0"), 16) / _SPACE
    except ValueError:
        return 0.0
