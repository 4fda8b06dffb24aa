"""The interface every store offers: what the cached service, re-warm and reconcile use.

A store reads a registry's storage, never writes it. Like distribution's ``BlobStatter`` and
``BlobProvider``, it is small: stat a blob, resolve blobs of a repository (one by one as the
registry does, or in bulk for what a walk listed or a cache names), read a manifest, and walk
repositories, their blob links and their manifest revisions (streamed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from typing import Final, Protocol

from worker.errors import (
    BlobNotFoundError,
    InvalidReferenceError,
    StoreError,
    TagNotFoundError,
)
from worker.registry import reference
from worker.registry.descriptor import Descriptor
from worker.registry.manifest import Manifest

__all__ = [
    "DEFAULT_MEMO_LIMIT",
    "MAX_LINK_BYTES",
    "Store",
    "is_name",
    "resolve_linked",
    "stat_or_error",
    "tagged_digest",
]

#: Blob sizes a run remembers (about 40 MB at most): blobs are shared by many repositories, and
#: a stat of each link's data again would double the walk's file-system work. The caller's memo
#: is dropped whole when full (re-warm, reconcile), so memory stays flat however many blobs the
#: store holds; an S3 listing adds the other sizes its pages show up to the same bound.
DEFAULT_MEMO_LIMIT: Final = 200_000
#: Bytes of a link file read at most: a link holds "<alg>:<hex>" (sha512's is the longest);
#: reading a little more catches junk.
MAX_LINK_BYTES: Final = 160

_log = logging.getLogger(__name__)


class Store(Protocol):
    """Read access to one registry's storage."""

    @property
    def requests(self) -> int:
        """Requests sent to a storage service so far (S3's; 0 for a filesystem)."""
        ...

    def check(self) -> None:
        """Raise StoreUnavailableError unless the storage can be read."""

    def stat(self, digest: str) -> Descriptor:
        """A blob of the global blob store; raise BlobNotFoundError when it is absent."""
        ...

    def fetch_many(
        self,
        repository: str,
        digests: Sequence[str],
        sizes: MutableMapping[str, int] | None = None,
        *,
        manifests: bool = False,
    ) -> list[Descriptor | StoreError]:
        """Resolve blobs of a repository as the registry does (link, then data); errors in
        place. ``sizes`` (digest to size, owned and bounded by the caller) spares stats.
        ``manifests``: as the manifest store resolves, through revision links too."""
        ...

    def fetch_listed(
        self,
        repository: str,
        digests: Sequence[str],
        sizes: MutableMapping[str, int] | None = None,
        *,
        manifests: bool = False,
        seen: MutableMapping[str, int] | None = None,
    ) -> list[Descriptor | StoreError]:
        """:meth:`fetch_many` of digests that :meth:`layers` (``manifests``: :meth:`revisions`)
        just listed, for a re-warm: a store may describe them from listings rather than read
        link by link (S3), and keep in ``seen`` (the caller's, bounded by it) every size those
        listings showed; the filesystem resolves them as :meth:`fetch_many` does."""
        ...

    def fetch_cached(
        self,
        repository: str | None,
        digests: Sequence[str],
        *,
        manifests: bool = False,
        seen: MutableMapping[str, int] | None = None,
    ) -> list[Descriptor | StoreError]:
        """What the store still holds of digests a cache names, for reconcile: with
        ``repository``, resolved as :meth:`fetch_many` resolves them; without, the blob data
        alone. A store may answer a large batch from listings (S3), keeping the sizes they
        show in ``seen`` as :meth:`fetch_listed` does; errors in place."""
        ...

    def exists(self, repository: str, digest: str) -> bool:
        """True when ``digest`` is linked into ``repository`` and its data is there."""
        ...

    def manifest(self, repository: str, digest: str) -> Manifest:
        """A manifest revision of ``repository``, parsed."""
        ...

    def resolve_tag(self, repository: str, tag: str) -> str:
        """The manifest digest ``tag`` of ``repository`` points at (the registry's tag link);
        raise TagNotFoundError when there is no such tag."""
        ...

    def has_repository(self, repository: str) -> bool:
        """True when ``repository`` has blob links or manifests."""
        ...

    def repositories(self) -> Iterator[str]:
        """Every repository, streamed."""
        ...

    def layers(self, repository: str, shard: str = "") -> Iterator[str]:
        """Digests linked into ``repository`` (those whose hex starts with ``shard``), streamed."""
        ...

    def revisions(self, repository: str, shard: str = "") -> Iterator[str]:
        """Manifest revisions of ``repository`` (``shard`` as above), streamed."""
        ...


def resolve_linked(
    repository: str,
    digest: str,
    folders: Sequence[str],
    read_link: Callable[[str], str | None],
    stat: Callable[[str], Descriptor],
) -> Descriptor | StoreError:
    """Resolve a blob of a repository as distribution's linked blob statter does: the first of
    ``folders`` (driver paths of link folders) whose ``<alg>/<hex>/link`` names the digest
    wins, then the data is statted. The store's error is returned, not raised (batches)."""
    algorithm, _, hex_ = digest.partition(":")
    try:
        for folder in folders:
            if read_link(f"{folder}/{algorithm}/{hex_}/link") == digest:
                return stat(digest)
        return BlobNotFoundError(f"blob {digest} is not linked into {repository}")
    except StoreError as exc:
        return exc


def tagged_digest(repository: str, tag: str, link: str | None) -> str:
    """The digest a tag's ``current/link`` holds (``link``: its text, None when absent);
    TagNotFoundError when absent, StoreError when it holds no digest."""
    if link is None:
        raise TagNotFoundError(f"{repository} has no tag {tag!r}")
    try:
        return reference.digest(link)
    except InvalidReferenceError:
        raise StoreError(f"the link of tag {tag!r} of {repository} holds no digest") from None


def stat_or_error(stat: Callable[[str], Descriptor], digest: str) -> Descriptor | StoreError:
    """``stat(digest)``, its StoreError returned instead of raised (batches)."""
    try:
        return stat(digest)
    except StoreError as exc:
        return exc


def is_name(name: str) -> bool:
    """True for a valid repository name; a warning names an invalid one (a walk skips it)."""
    try:
        reference.repository_name(name)
    except InvalidReferenceError as exc:
        if name:
            _log.warning("skipping repository %r: %s", name, exc)
        return False
    return True
