"""The filesystem driver's storage, read-only: the tree of :mod:`worker.storage.paths` under
the registry's ``storage.filesystem.rootdirectory``.

Every path is built by :mod:`worker.storage.paths` (names and digests validated there) and
checked once more to stay below the root. Walks stream: they hold one directory iterator per
level of nesting, never a whole listing, so memory stays flat however large the store is.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, MutableMapping, Sequence
from pathlib import Path
from typing import Final

from worker.errors import (
    BlobNotFoundError,
    InvalidReferenceError,
    StoreError,
    StoreUnavailableError,
)
from worker.registry import reference
from worker.registry.descriptor import Descriptor
from worker.registry.manifest import MAX_MANIFEST_BYTES, Manifest, parse_manifest
from worker.storage import paths
from worker.storage.base import (
    MAX_LINK_BYTES,
    is_name,
    resolve_linked,
    stat_or_error,
    tagged_digest,
)

__all__ = ["FilesystemStore"]

_log = logging.getLogger(__name__)
#: Repositories whose link folders are kept (see FilesystemStore._link_folders).
_FOLDERS_KEPT: Final = 4096


class FilesystemStore:
    """Reads a filesystem registry's storage under ``root`` (its ``rootdirectory``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = os.path.abspath(os.fspath(root))
        self._root_prefix = self._root.rstrip(os.sep) + os.sep  # "/" itself as a root too
        self._v2 = os.path.join(self._root, paths.DRIVER_ROOT.lstrip("/"))
        self._folders: dict[tuple[str, bool], tuple[str, ...]] = {}

    def __repr__(self) -> str:
        return f"FilesystemStore({self._root!r})"

    @property
    def root(self) -> Path:
        """The storage root, as given to the registry (``rootdirectory``)."""
        return Path(self._root)

    @property
    def requests(self) -> int:
        """Requests to a storage service: none, the filesystem is local."""
        return 0

    def check(self) -> None:
        """Raise StoreUnavailableError unless the root is a readable directory."""
        if not os.path.isdir(self._root):
            raise StoreUnavailableError(f"storage root {self._root} does not exist")
        if not os.access(self._root, os.R_OK | os.X_OK):
            raise StoreUnavailableError(f"storage root {self._root} is not readable")

    def os_path(self, driver_path: str) -> str:
        """The operating system's path of a driver path (see :mod:`worker.storage.paths`)."""
        return self._inside(driver_path)

    def _inside(self, driver_path: str) -> str:
        # Names are validated already; this is the second lock on the door, kept because a
        # path that leaves the root must be impossible, not merely unlikely.
        path = os.path.normpath(os.path.join(self._root, driver_path.lstrip("/")))
        # A prefix test on normalised paths (commonpath costs a walk's time per repository).
        if path != self._root and not path.startswith(self._root_prefix):
            raise InvalidReferenceError(f"path {path} leaves the storage root")
        return path

    # -- blobs ----------------------------------------------------------------------------------

    def stat(self, digest: str) -> Descriptor:
        """Stat a blob in the global blob store; raise BlobNotFoundError when it is absent."""
        return self._stat(reference.digest(digest))

    def _stat(self, digest: str, sizes: MutableMapping[str, int] | None = None) -> Descriptor:
        # Callers validated the digest: "<alg>:<hex>" cannot spell a way out of the root.
        algorithm, _, hex_ = digest.partition(":")
        path = paths.blob_data_unchecked(algorithm, hex_)
        size = sizes.get(digest) if sizes is not None else None
        if size is None:
            try:
                size = os.stat(self._v2 + path[len(paths.DRIVER_ROOT) :]).st_size
            except FileNotFoundError:
                raise BlobNotFoundError(f"blob {digest} is not in the store") from None
            except OSError as exc:
                raise StoreError(f"cannot stat blob {digest}: {exc.strerror}") from None
            if sizes is not None:
                sizes[digest] = size
        return Descriptor(digest=digest, size=size, path=path)

    def fetch(self, repository: str, digest: str) -> Descriptor:
        """Resolve a blob of a repository as the registry does: its link, then its data.

        The descriptor carries the data's path, so a cache fill needs no second stat.
        """
        result = self.fetch_many(repository, [digest])[0]
        if isinstance(result, StoreError):
            raise result
        return result

    def fetch_many(
        self,
        repository: str,
        digests: Sequence[str],
        sizes: MutableMapping[str, int] | None = None,
        *,
        manifests: bool = False,
    ) -> list[Descriptor | StoreError]:
        """:meth:`fetch` for a batch of one repository; errors are returned in place.

        ``sizes`` (digest to size) spares a stat for blobs already seen by the caller, which
        owns it and bounds it: a walk's blobs are shared by many repositories. ``manifests``
        resolves as the registry's manifest store does: the revision link, else the blob link.
        """
        folders = self._link_folders(repository, manifests)
        for d in digests:
            reference.digest(d)
        return [self._fetch(repository, folders, d, sizes) for d in digests]

    def _link_folders(self, repository: str, manifests: bool) -> tuple[str, ...]:
        # A pure function of the name, asked for by every batch of a repository: kept, so the
        # name's check and the path's (normpath, commonpath) are paid once per repository.
        key = (repository, manifests)
        folders = self._folders.get(key)
        if folders is None:
            layers = self._inside(paths.layers(repository))
            # The manifest store resolves through revision links first, then blob links.
            folders = (
                (self._inside(paths.revisions(repository)), layers) if manifests else (layers,)
            )
            if len(self._folders) >= _FOLDERS_KEPT:
                self._folders.clear()  # bounded: a walk meets every repository once
            self._folders[key] = folders
        return folders

    def fetch_listed(
        self,
        repository: str,
        digests: Sequence[str],
        sizes: MutableMapping[str, int] | None = None,
        *,
        manifests: bool = False,
        seen: MutableMapping[str, int] | None = None,
    ) -> list[Descriptor | StoreError]:
        """:meth:`fetch_many`: reading a link costs no more here than listing it."""
        del seen  # a stat costs less than remembering
        return self.fetch_many(repository, digests, sizes, manifests=manifests)

    def fetch_cached(
        self,
        repository: str | None,
        digests: Sequence[str],
        *,
        manifests: bool = False,
        seen: MutableMapping[str, int] | None = None,
    ) -> list[Descriptor | StoreError]:
        """:meth:`fetch_many`, or a stat of each blob without ``repository``."""
        del seen  # a stat costs less than remembering
        if repository is not None:
            return self.fetch_many(repository, digests, manifests=manifests)
        return [stat_or_error(self.stat, d) for d in digests]

    def _fetch(
        self,
        repository: str,
        folders: Sequence[str],
        digest: str,
        sizes: MutableMapping[str, int] | None,
    ) -> Descriptor | StoreError:
        return resolve_linked(
            repository, digest, folders, self._read_link, lambda d: self._stat(d, sizes)
        )

    def exists(self, repository: str, digest: str) -> bool:
        """True when ``digest`` is linked into ``repository`` and its data is in the store."""
        try:
            self.fetch(repository, digest)
        except BlobNotFoundError:
            return False
        return True

    # -- manifests and tags ---------------------------------------------------------------------

    def read_manifest(self, repository: str, digest: str) -> bytes:
        """The bytes of a manifest revision of ``repository``."""
        if self._read_link(self._inside(paths.revision_link(repository, digest))) != digest:
            raise BlobNotFoundError(f"manifest {digest} is not a revision of {repository}")
        try:
            with open(self._inside(paths.blob_data(digest)), "rb") as f:
                return f.read(MAX_MANIFEST_BYTES + 1)
        except FileNotFoundError:
            raise BlobNotFoundError(f"manifest {digest} is not in the store") from None
        except OSError as exc:
            raise StoreError(f"cannot read manifest {digest}: {exc.strerror}") from None

    def manifest(self, repository: str, digest: str) -> Manifest:
        """A manifest revision of ``repository``, parsed into the digests it references."""
        return parse_manifest(self.read_manifest(repository, digest))

    def resolve_tag(self, repository: str, tag: str) -> str:
        """The manifest digest ``tag`` of ``repository`` points at, from its tag link."""
        link = self._read_link(self._inside(paths.tag_link(repository, tag)))
        return tagged_digest(repository, tag, link)

    def has_repository(self, repository: str) -> bool:
        """True when ``repository`` has blob links or manifests in the store."""
        folder = self._inside(paths.repository(repository))
        return any(
            os.path.isdir(os.path.join(folder, sub)) for sub in (paths.LAYERS, paths.MANIFESTS)
        )

    # -- walks: streamed ------------------------------------------------------------------------

    def repositories(self) -> Iterator[str]:
        """Every repository in the store, streamed, in no particular order.

        Directories whose names are not valid repository names are logged and skipped.
        """
        top = self._inside(paths.REPOSITORIES)
        yield from self._walk_repositories(top, "")

    def _walk_repositories(self, directory: str, prefix: str) -> Iterator[str]:
        try:
            it = os.scandir(directory)
        except FileNotFoundError:
            return
        with it:
            is_repository = False
            for entry in it:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                if entry.name.startswith("_"):
                    if entry.name in (paths.LAYERS, paths.MANIFESTS) and not is_repository:
                        is_repository = True
                        # A host alone ("localhost:5000") begins names but is none itself.
                        if is_name(prefix):
                            yield prefix
                    continue
                name = f"{prefix}/{entry.name}" if prefix else entry.name
                if not reference.repository_prefix(name):
                    _log.warning("skipping %s: no repository name begins %r", entry.path, name)
                    continue
                yield from self._walk_repositories(entry.path, name)

    def layers(self, repository: str, shard: str = "") -> Iterator[str]:
        """Digests of the blobs linked into ``repository``, streamed, from the link paths.

        ``shard`` (a hex prefix) keeps the digests whose hex starts with it: the 16 shards
        ``"0"`` to ``"f"`` split a large repository into even parts.
        """
        return self._linked(self._inside(paths.layers(repository)), shard)

    def revisions(self, repository: str, shard: str = "") -> Iterator[str]:
        """Digests of the manifest revisions of ``repository``, streamed (``shard`` as above)."""
        return self._linked(self._inside(paths.revisions(repository)), shard)

    def _linked(self, directory: str, shard: str = "") -> Iterator[str]:
        # <directory>/<alg>/<hex>/link: the digest is spelled by the path; the link is read only
        # when a blob is resolved, as the registry does.
        for algorithm in _subdirectories(directory):
            if algorithm not in reference.DIGEST_ALGORITHMS:
                continue
            for hex_ in _subdirectories(os.path.join(directory, algorithm)):
                if not hex_.startswith(shard):
                    continue
                candidate = f"{algorithm}:{hex_}"
                try:
                    yield reference.digest(candidate)
                except InvalidReferenceError:
                    _log.warning("skipping %s/%s: not a digest", directory, candidate)

    def _read_link(self, path: str) -> str | None:
        # os.open/os.read: a link is read once per blob of a walk, and the buffered open()
        # costs several times more than the read itself.
        try:
            fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StoreError(f"cannot read link {path}: {exc.strerror}") from None
        try:
            return os.read(fd, MAX_LINK_BYTES).decode("ascii", "replace").strip()
        except OSError as exc:
            raise StoreError(f"cannot read link {path}: {exc.strerror}") from None
        finally:
            os.close(fd)


def _subdirectories(directory: str) -> Iterator[str]:
    try:
        it = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return
    with it:
        for entry in it:
            if entry.is_dir(follow_symlinks=False):
                yield entry.name
