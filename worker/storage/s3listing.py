"""What the S3 store reads from listings, apart from S3 itself: digests spelled by keys, blob
sizes by a merge of wanted digests with a sorted listing, the repositories (and their links) of
a folder listed whole, and pages read ahead in parallel with bounded memory.

Every function takes the keys (or a function that lists one page); none sends a request itself.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, MutableMapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from worker.errors import InvalidReferenceError, StoreError
from worker.registry import reference
from worker.storage import paths

__all__ = [
    "LISTERS",
    "FolderListing",
    "blob_sizes",
    "is_name",
    "link_digests",
    "linked",
    "prefetched",
    "read_folder",
]

_log = logging.getLogger(__name__)
#: Pages a prefix's lister may hold ahead of the walk (1000 keys each): what bounds memory.
_PAGES_AHEAD: Final = 2
#: Sizes a listing page may add to a run's memory beyond the ones wanted (about 40 MB).
SEEN_LIMIT: Final = 200_000
_END: Final = object()
#: Keys a listing page holds (S3's default and largest).
_PAGE_KEYS: Final = 1000
#: A merge goes on in parallel when what is left of it looks longer than this many pages: below
#: it, pages one after another cost fewer requests than a lister per hex digit.
_PARALLEL_PAGES: Final = 4
_SPACE: Final = float(16**12)
_TINY: Final = 1 / _SPACE

ListPage = Callable[..., dict[str, Any]]
Pages = Callable[..., Iterator[dict[str, Any]]]
_HEX: Final = "0123456789abcdef"
#: Listers a large folder needs at most: one per next hex digit, and one per other algorithm.
LISTERS: Final = len(_HEX) + len(reference.DIGEST_ALGORITHMS)


def link_digests(folder: str, keys: list[str]) -> Iterator[str]:
    """The digests of ``<folder>/<alg>/<hex>/link`` keys; other keys are skipped."""
    for key in keys:
        algorithm, _, rest = key[len(folder) + 1 :].partition("/")
        hex_, _, tail = rest.partition("/")
        if tail != "link" or algorithm not in reference.DIGEST_ALGORITHMS:
            continue
        try:
            yield reference.digest(f"{algorithm}:{hex_}")
        except InvalidReferenceError:
            _log.warning("skipping %s: not a digest", key)


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
    _SizeMerge(list_page, base, algorithm, memo, pool).run(base, hexes, _Stretch(0.0, 1.0))


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
class _SizeMerge:
    list_page: ListPage
    base: str
    algorithm: str
    memo: MutableMapping[str, int]
    pool: Executor | None

    def run(self, prefix: str, hexes: list[str], where: _Stretch) -> None:
        """Merge ``hexes`` with the keys under ``prefix``, from ``where`` on."""
        base, memo, i = self.base, self.memo, 0
        while True:
            if i < len(hexes) and where.far(_place(hexes[i])):
                start = f"{base}{hexes[i][:2]}/{hexes[i]}/dat"  # sorts just before .../data
            elif i >= len(hexes) and (where.density is None or where.far(where.end)):
                return  # all found, and the rest of the folder would cost pages
            else:
                start = where.after
            page = self.list_page(Prefix=prefix, **({"StartAfter": start} if start else {}))
            contents = page.get("Contents", [])
            listed: list[str] = []
            for obj in contents:
                _, _, rest = obj["Key"][len(base) :].partition("/")
                hex_, _, tail = rest.partition("/")
                if tail != "data":
                    continue
                listed.append(hex_)
                digest = f"{self.algorithm}:{hex_}"
                if digest in memo or len(memo) < SEEN_LIMIT:
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
        one = _SizeMerge(self.list_page, self.base, self.algorithm, self.memo, None)
        futures = []
        for c, group in groups.items():
            first, end = int(c, 16) / 16, (int(c, 16) + 1) / 16
            stretch = (
                _Stretch(where.at, end, where.density, where.after)
                if c == current
                else _Stretch(first, end, where.density)
            )
            futures.append(self.pool.submit(one.run, self.base + c, group, stretch))
        for future in futures:
            future.result()  # a StoreError of any lister is the merge's


def _place(hex_: str) -> float:
    """Where a digest's hex falls in the digest space, from 0 to 1 (0 for what is not hex)."""
    try:
        return int(hex_[:12].ljust(12, "0"), 16) / _SPACE
    except ValueError:
        return 0.0


@dataclass
class FolderListing:
    """The repositories below one folder that fitted in one page, with their links: what
    ``layers`` and ``revisions`` answer right after the walk that listed it, for free."""

    at: float
    repositories: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)


def read_folder(prefix: str, name: str, keys: list[str], at: float) -> FolderListing:
    """The repositories (``name`` + the path below ``prefix``) that ``keys`` show, in order."""
    listing = FolderListing(at)
    for key in keys:
        parts = key[len(prefix) :].split("/")
        i = next((n for n, p in enumerate(parts) if p.startswith("_")), None)
        if i is None or parts[i] not in (paths.LAYERS, paths.MANIFESTS):
            continue
        repository = "/".join([name, *parts[:i]] if name else parts[:i])
        entry = listing.repositories.get(repository)
        if entry is None:
            if not is_name(repository):
                continue
            entry = listing.repositories[repository] = ([], [])
        rest = parts[i + 1 :]
        if parts[i] == paths.MANIFESTS:
            if rest[:1] != ["revisions"]:
                continue
            rest, which = rest[1:], entry[1]
        else:
            which = entry[0]
        if len(rest) == 3 and rest[2] == "link" and rest[0] in reference.DIGEST_ALGORITHMS:
            try:
                which.append(reference.digest(f"{rest[0]}:{rest[1]}"))
            except InvalidReferenceError:
                _log.warning("skipping %s: not a digest", key)
    return listing


def is_name(name: str) -> bool:
    """True for a valid repository name; a warning names an invalid one."""
    try:
        reference.repository_name(name)
    except InvalidReferenceError as exc:
        if name:
            _log.warning("skipping repository %r: %s", name, exc)
        return False
    return True


def prefetched(pool: ThreadPoolExecutor, sources: list[Iterator[list[str]]]) -> Iterator[list[str]]:
    """The pages of every source in order, each source read ahead by a thread of ``pool``.

    At most ``_PAGES_AHEAD`` pages wait per source. Closing the iterator early stops the
    threads at their next page.
    """
    stop = threading.Event()
    queues: list[queue.Queue[object]] = [queue.Queue(_PAGES_AHEAD) for _ in sources]

    def put(out: queue.Queue[object], item: object) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce(source: Iterator[list[str]], out: queue.Queue[object]) -> None:
        try:
            for page in source:
                if not put(out, page):
                    return
            put(out, _END)
        except StoreError as exc:
            put(out, exc)

    futures = [pool.submit(produce, s, q) for s, q in zip(sources, queues, strict=True)]
    try:
        for q in queues:
            while (item := q.get()) is not _END:
                if isinstance(item, StoreError):
                    raise item
                yield item  # type: ignore[misc]
    finally:
        stop.set()
        for f in futures:
            f.cancel()


def linked(
    pages: Pages, listers: Callable[[], ThreadPoolExecutor], folder: str, shard: str
) -> Iterator[str]:
    """The digests of ``<folder>/<alg>/<hex>/link`` keys whose hex starts with ``shard``.

    A small folder is one request. A large one (a first page that is truncated) is listed on
    by one thread per next hex digit, a few pages ahead each, read in order: the digests come
    sorted, and memory stays flat.
    """
    if shard:
        prefixes = [f"{folder}/{a}/{shard}" for a in sorted(reference.DIGEST_ALGORITHMS)]
    else:
        prefixes = [f"{folder}/"]
    for prefix in prefixes:
        first = next(pages(Prefix=prefix))
        keys = [obj["Key"] for obj in first.get("Contents", [])]
        yield from link_digests(folder, keys)
        if first.get("IsTruncated") and keys:
            rest = _rest(pages, folder, shard, keys[-1])
            for page in prefetched(listers(), rest):
                yield from link_digests(folder, page)


def _rest(pages: Pages, folder: str, shard: str, last: str) -> list[Iterator[list[str]]]:
    # What follows ``last``: the rest of its hex prefix, each later prefix, other algorithms.
    algorithm, _, rest = last[len(folder) + 1 :].partition("/")
    current = rest[: len(shard) + 1]
    sources = [_keys(pages, f"{folder}/{algorithm}/{current}", last)]
    sources += [
        _keys(pages, f"{folder}/{algorithm}/{shard}{c}") for c in _HEX if shard + c > current
    ]
    if not shard:
        sources += [
            _keys(pages, f"{folder}/{a}/")
            for a in sorted(reference.DIGEST_ALGORITHMS)
            if a > algorithm
        ]
    return sources


def _keys(pages: Pages, prefix: str, after: str = "") -> Iterator[list[str]]:
    for page in pages(Prefix=prefix, **({"StartAfter": after} if after else {})):
        yield [obj["Key"] for obj in page.get("Contents", [])]
