"""What an S3 store still holds of digests named elsewhere, answered from listings: a cache's
entries (reconcile) and a writer's re-check after its cache write (a delete always wins).

Links come from listings of link folders (``<folder>/<alg>/<hex>/link``: a key spells its
digest), sizes from a merge with ``blobs/`` (:mod:`worker.storage.s3merge`). A re-warm's writes
are re-checked together (:func:`rechecked`): the repositories its walk read in one folder
listing (:class:`~worker.storage.s3listing.FolderListing`) by one listing of that folder again,
made now, after the writes; the others by a merge with their own link folders, one per
repository however many of its batches wait. Either way every link is listed afresh: nothing
is taken from the walk's own listing.

Functions here take the store's list functions and pool (:class:`Lister`); none holds state.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, MutableMapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

from worker.errors import BlobNotFoundError, StoreError
from worker.registry import reference
from worker.registry.descriptor import Descriptor
from worker.storage import paths
from worker.storage.s3listing import FolderListing, ListPage, Pages, relist_folder
from worker.storage.s3merge import links_among, sizes_by_listing

__all__ = ["Answers", "Lister", "Recheck", "by_listing", "rechecked"]

#: A write to re-check: repository, digests, manifests? (live through a revision link too), and
#: the folder listing it was walked in (its key; None: the repository's own link folders).
Recheck = tuple[str, Sequence[str], bool, str | None]
#: A store's answers for digests, in their order: a descriptor, or the error (not found...).
Answers = list[Descriptor | StoreError]


@dataclass(frozen=True)
class Lister:
    """How a store lists: one page, every page, its pool, and a driver path's key."""

    list_page: ListPage
    pages: Pages
    pool: Callable[[], Executor]
    key: Callable[[str], str]

    def links(self, folder: str, digests: Collection[str]) -> set[str]:
        """The ``digests`` linked in the link folder at driver path ``folder``."""
        return links_among(self.list_page, self.key(folder) + "/", digests, pool=self.pool())

    def sizes(self, digests: Collection[str], memo: MutableMapping[str, int]) -> None:
        """Put the sizes of ``digests`` (and of what else a page shows) in ``memo``."""
        blobs = self.key(f"{paths.DRIVER_ROOT}/blobs/")
        sizes_by_listing(self.list_page, blobs, digests, memo, pool=self.pool())


def by_listing(
    lister: Lister,
    repository: str | None,
    digests: Sequence[str],
    unknown: set[str] | None,
    memo: MutableMapping[str, int],
    *,
    sizes: MutableMapping[str, int] | None = None,
    folders: Sequence[str] = (),
) -> Answers:
    """Descriptors of ``digests`` from listings: linked in any of ``folders`` (driver paths;
    none: not asked), sized from ``memo``, ``sizes`` or ``blobs/`` (``unknown``'s sizes, else
    those of every digest linked and not in ``memo``). A listing's error answers them all."""
    for d in digests:
        reference.digest(d)
    live: set[str] = set()
    try:
        for folder in folders:
            rest = [d for d in digests if d not in live]
            if rest:
                live |= lister.links(folder, rest)
        if unknown is None:
            unknown = {d for d in digests if d not in memo and (not folders or d in live)}
        lister.sizes(unknown, memo)
    except StoreError as exc:
        return [exc for _ in digests]
    return _answers(repository, digests, live if folders else None, memo, sizes)


def rechecked(
    lister: Lister, root: str, checks: Sequence[Recheck], memo: MutableMapping[str, int]
) -> list[Answers]:
    """What the store holds now of each check's digests, in order (see the module).

    ``root`` is the key of ``repositories/`` (with its slash): a folder listing's key below
    it spells the path its repositories begin with. Sizes come from ``memo`` (a re-warm's, on
    3.x: a link listed afresh vouches for its data), the rest from one merge with ``blobs/``.
    A listing's error answers the checks it was for.
    """
    for _, digests, _, _ in checks:
        for d in digests:
            reference.digest(d)
    live: list[set[str] | StoreError] = []
    folders: dict[str, FolderListing | StoreError] = {}
    own: dict[str, dict[str, set[str]] | StoreError] = {}
    for repository, digests, manifests, scope in checks:
        if scope is not None:
            if scope not in folders:
                folders[scope] = _relisted(lister, root, scope)
            live.append(_in_folder(folders[scope], repository, digests, manifests))
            continue
        if repository not in own:
            own[repository] = _own_links(lister, repository, checks)
        linked = own[repository]
        if isinstance(linked, StoreError):
            live.append(linked)
        else:
            kept = linked["layers"] | (linked["revisions"] if manifests else set())
            live.append(kept & set(digests))
    unknown = {d for found in live if not isinstance(found, StoreError) for d in found}
    try:
        lister.sizes({d for d in unknown if d not in memo}, memo)
    except StoreError as exc:
        return [[exc for _ in digests] for _, digests, _, _ in checks]
    return [
        [found for _ in check[1]]
        if isinstance(found, StoreError)
        else _answers(check[0], check[1], found, memo, None)
        for check, found in zip(checks, live, strict=True)
    ]


def _relisted(lister: Lister, root: str, scope: str) -> FolderListing | StoreError:
    if not scope.startswith(root):  # a key the walk never gave: refuse, never guess
        return StoreError(f"{scope} is not a folder of {root}")
    name = scope[len(root) :].rstrip("/")
    try:
        return relist_folder(lister.pages, FolderListing(0.0, scope, name))
    except StoreError as exc:
        return exc


def _in_folder(
    folder: FolderListing | StoreError, repository: str, digests: Sequence[str], manifests: bool
) -> set[str] | StoreError:
    if isinstance(folder, StoreError):
        return folder
    layers, revisions = folder.repositories.get(repository, ([], []))
    linked = set(layers) | (set(revisions) if manifests else set())
    return {d for d in digests if d in linked}


def _own_links(
    lister: Lister, repository: str, checks: Sequence[Recheck]
) -> dict[str, set[str]] | StoreError:
    # Every batch of the repository at once: one merge of its link folder, not one a batch.
    wanted = {d for r, ds, _, s in checks if r == repository and s is None for d in ds}
    manifests = {d for r, ds, m, s in checks if r == repository and s is None and m for d in ds}
    try:
        layers = lister.links(paths.layers(repository), wanted)
        rest = manifests - layers
        revisions = lister.links(paths.revisions(repository), rest) if rest else set()
    except StoreError as exc:
        return exc
    return {"layers": layers, "revisions": revisions}


def _answers(
    repository: str | None,
    digests: Sequence[str],
    live: set[str] | None,
    memo: MutableMapping[str, int],
    sizes: MutableMapping[str, int] | None,
) -> Answers:
    # ``live`` None: links not asked (the blob data alone).
    results: Answers = []
    for d in digests:
        size = memo.get(d, sizes.get(d) if sizes is not None else None)
        if live is not None and d not in live:
            results.append(BlobNotFoundError(f"blob {d} is not linked into {repository}"))
        elif size is None:
            results.append(BlobNotFoundError(f"blob {d} is not in the store"))
        else:
            if sizes is not None:
                sizes[d] = size
            results.append(Descriptor(d, size, path=paths.blob_data(d)))
    return results
