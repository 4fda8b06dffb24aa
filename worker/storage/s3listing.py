"""What the S3 store reads from listings, apart from S3 itself: digests spelled by keys, the
repositories (and their links) of a folder listed whole, and pages read ahead in parallel with
bounded memory. Merges of wanted digests with a listing are in :mod:`worker.storage.s3merge`.

Every function takes the keys (or a function that lists one page); none sends a request itself.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from worker.errors import InvalidReferenceError
from worker.registry import reference
from worker.storage import paths
from worker.storage.base import is_name

__all__ = [
    "LISTERS",
    "FolderListing",
    "RepositoryWalk",
    "link_digests",
    "linked",
    "prefetched",
    "read_folder",
    "relist_folder",
]

_log = logging.getLogger(__name__)
#: Pages a prefix's lister may hold ahead of the walk (1000 keys each): what bounds memory.
_PAGES_AHEAD: Final = 2
_END: Final = object()
#: How long a walk's listing of a small folder answers ``layers`` and ``revisions``: the re-warm
#: asks right after the walk yields the repository.
_FOLDER_FRESH: Final = 5.0

ListPage = Callable[..., dict[str, Any]]
Pages = Callable[..., Iterator[dict[str, Any]]]
#: Listers a large folder needs at most: one per next hex digit, and one per other algorithm.
LISTERS: Final = len(reference.HEX_DIGITS) + len(reference.DIGEST_ALGORITHMS)


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


@dataclass
class FolderListing:
    """The repositories below one folder that fitted in one page, with their links: what
    ``layers`` and ``revisions`` answer right after the walk that listed it, for free.
    ``prefix`` and ``name``: the folder's key and the repository path it stands for, what a
    re-check lists again (:func:`relist_folder`)."""

    at: float
    prefix: str = ""
    name: str = ""
    repositories: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)


def read_folder(prefix: str, name: str, keys: list[str], at: float) -> FolderListing:
    """The repositories (``name`` + the path below ``prefix``) that ``keys`` show, in order."""
    listing = FolderListing(at, prefix, name)
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


@dataclass
class RepositoryWalk:
    """The walk of the "folders" under ``repositories/``, by the store's list functions.

    A folder whose keys fit in one page is read whole (one request): its repositories, and
    their links, which :meth:`listed` then gives without a request for a few seconds.
    """

    list_page: ListPage
    pages: Pages
    folder: FolderListing | None = None

    def repositories(self, prefix: str, name: str = "") -> Iterator[str]:
        """Every repository below ``prefix`` (named ``name`` + the path below it), streamed."""
        first = self.list_page(Prefix=prefix)
        if not first.get("IsTruncated"):
            keys = [obj["Key"] for obj in first.get("Contents", [])]
            self.folder = read_folder(prefix, name, keys, time.monotonic())
            yield from list(self.folder.repositories)
            return
        is_repository = False
        for page in self.pages(Prefix=prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                component = common["Prefix"][len(prefix) :].rstrip("/")
                if component.startswith("_"):
                    if component in (paths.LAYERS, paths.MANIFESTS) and not is_repository:
                        is_repository = True
                        if is_name(name):
                            yield name
                    continue
                child = f"{name}/{component}" if name else component
                if not reference.repository_prefix(child):
                    _log.warning("skipping %s: no repository name begins %r", prefix, child)
                    continue
                yield from self.repositories(common["Prefix"], child)

    def listed(self, repository: str, which: int, shard: str) -> Iterator[str] | None:
        """The links (``which``: 0 blobs, 1 revisions) of ``repository`` whose hex starts with
        ``shard``, when the last folder read whole showed them lately; else None."""
        folder = self.folder
        if folder is None or time.monotonic() - folder.at > _FOLDER_FRESH:
            return None
        entry = folder.repositories.get(repository)
        if entry is None:
            return None
        return (d for d in entry[which] if d.partition(":")[2].startswith(shard))

    def scope(self, repository: str) -> FolderListing | None:
        """The folder read whole that showed ``repository`` last, whatever its age; else None.

        Not bounded by freshness as :meth:`listed` is: what a re-check makes of it is a new
        listing of the same keys, never the old one.
        """
        folder = self.folder
        if folder is None or repository not in folder.repositories:
            return None
        return folder


def relist_folder(pages: Pages, folder: FolderListing) -> FolderListing:
    """``folder`` listed again, now, every page of it: the links its repositories have now."""
    keys = [obj["Key"] for page in pages(Prefix=folder.prefix) for obj in page.get("Contents", [])]
    return read_folder(folder.prefix, folder.name, keys, time.monotonic())


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
        except Exception as exc:  # every error reaches the reader: one left behind hangs it
            put(out, exc)

    futures = [pool.submit(produce, s, q) for s, q in zip(sources, queues, strict=True)]
    try:
        for q in queues:
            while (item := q.get()) is not _END:
                if isinstance(item, Exception):
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
        _keys(pages, f"{folder}/{algorithm}/{shard}{c}")
        for c in reference.HEX_DIGITS
        if shard + c > current
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
