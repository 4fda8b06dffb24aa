"""The registry's storage, read-only: the one module that spells every storage path.

The layout, under the registry's ``rootdirectory`` (the same under an S3/GCS/Azure root prefix)::

    <root>/docker/registry/v2/                       <- the storage driver's "/docker/registry/v2"
    ├── blobs/<alg>/<hex[:2]>/<hex>/data             blob bytes (layers, configs, manifests)
    └── repositories/<name>/                         <name> may hold slashes: org/team/app
        ├── _layers/<alg>/<hex>/link                 blob linked into the repo ("<alg>:<hex>")
        ├── _manifests/revisions/<alg>/<hex>/link    manifest revision of the repo
        ├── _manifests/tags/<tag>/current/link       what a tag points at
        └── _uploads/...                             uploads in progress (ignored)

A directory under ``repositories/`` is a repository when it holds ``_layers`` or ``_manifests``;
repositories nest (``org/app`` and ``org/app/sub`` can both exist), so the walk goes on below one.

Every name and digest is validated (:mod:`worker.reference`) before it becomes a path, and every
path is checked to stay below the root. Walks stream: they hold one directory iterator per level
of nesting, never a whole listing, so memory stays flat however large the store is.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, MutableMapping, Sequence
from pathlib import Path
from typing import Final

from worker import reference
from worker.descriptor import Descriptor
from worker.errors import (
    BlobNotFoundError,
    InvalidReferenceError,
    StoreError,
    StoreUnavailableError,
)
from worker.manifest import MAX_MANIFEST_BYTES, Manifest, parse_manifest

__all__ = ["DRIVER_ROOT", "FilesystemStore"]

#: Where the registry's storage driver keeps everything, relative to the driver's root.
DRIVER_ROOT: Final = "/docker/registry/v2"

_log = logging.getLogger(__name__)
# A link holds "<alg>:<hex>"; sha512 is the longest. Reading a little more catches junk.
_MAX_LINK_BYTES: Final = 160


class FilesystemStore:
    """Reads a filesystem registry's storage under ``root`` (its ``rootdirectory``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = os.path.abspath(os.fspath(root))
        self._v2 = os.path.join(self._root, DRIVER_ROOT.lstrip("/"))

    def __repr__(self) -> str:
        return f"FilesystemStore({self._root!r})"

    @property
    def root(self) -> Path:
        """The storage root, as given to the registry (``rootdirectory``)."""
        return Path(self._root)

    def check(self) -> None:
        """Raise StoreUnavailableError unless the root is a readable directory."""
        if not os.path.isdir(self._root):
            raise StoreUnavailableError(f"storage root {self._root} does not exist")
        if not os.access(self._root, os.R_OK | os.X_OK):
            raise StoreUnavailableError(f"storage root {self._root} is not readable")

    # -- paths: the only place that spells them -------------------------------------------------

    def blob_driver_path(self, digest: str) -> str:
        """The driver's path of a blob's data, as the 2.0 ``layerinfo`` cache stores it."""
        return _blob_path(*reference.split_digest(digest))

    def blob_data_path(self, digest: str) -> str:
        """The operating system's path of a blob's data."""
        return self._inside(self.blob_driver_path(digest))

    def layer_link_path(self, repository: str, digest: str) -> str:
        """Path of the link that says ``digest`` is a blob of ``repository``."""
        algorithm, hex_ = reference.split_digest(digest)
        return self._inside(self._repo(repository), "_layers", algorithm, hex_, "link")

    def revision_link_path(self, repository: str, digest: str) -> str:
        """Path of the link that says ``digest`` is a manifest revision of ``repository``."""
        algorithm, hex_ = reference.split_digest(digest)
        return self._inside(
            self._repo(repository), "_manifests", "revisions", algorithm, hex_, "link"
        )

    def tag_link_path(self, repository: str, tag: str) -> str:
        """Path of the link that says what ``tag`` of ``repository`` points at."""
        return self._inside(
            self._repo(repository), "_manifests", "tags", reference.tag(tag), "current", "link"
        )

    def _repo(self, repository: str) -> str:
        return f"{DRIVER_ROOT}/repositories/{reference.repository_name(repository)}"

    def _inside(self, driver_path: str, *parts: str) -> str:
        # Names are validated already; this is the second lock on the door, kept because a
        # path that leaves the root must be impossible, not merely unlikely.
        path = os.path.normpath(os.path.join(self._root, driver_path.lstrip("/"), *parts))
        if os.path.commonpath((self._root, path)) != self._root:
            raise InvalidReferenceError(f"path {path} leaves the storage root")
        return path

    # -- blobs ----------------------------------------------------------------------------------

    def stat(self, digest: str) -> Descriptor:
        """Stat a blob in the global blob store; raise BlobNotFoundError when it is absent."""
        return self._stat(reference.digest(digest))

    def _stat(self, digest: str, sizes: MutableMapping[str, int] | None = None) -> Descriptor:
        # Callers validated the digest: "<alg>:<hex>" cannot spell a way out of the root.
        algorithm, _, hex_ = digest.partition(":")
        path = _blob_path(algorithm, hex_)
        size = sizes.get(digest) if sizes is not None else None
        if size is None:
            try:
                size = os.stat(self._v2 + path[len(DRIVER_ROOT) :]).st_size
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
    ) -> list[Descriptor | StoreError]:
        """:meth:`fetch` for a batch of one repository; errors are returned in place.

        ``sizes`` (digest to size) spares a stat for blobs already seen by the caller, which
        owns it and bounds it: a walk's blobs are shared by many repositories.
        """
        layers = self._inside(self._repo(repository), "_layers")
        for d in digests:
            reference.digest(d)
        return [self._fetch(repository, layers, d, sizes) for d in digests]

    def _fetch(
        self,
        repository: str,
        layers: str,
        digest: str,
        sizes: MutableMapping[str, int] | None,
    ) -> Descriptor | StoreError:
        algorithm, _, hex_ = digest.partition(":")
        try:
            if self._read_link(f"{layers}/{algorithm}/{hex_}/link") != digest:
                return BlobNotFoundError(f"blob {digest} is not linked into {repository}")
            return self._stat(digest, sizes)
        except StoreError as exc:
            return exc

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
        if self._read_link(self.revision_link_path(repository, digest)) != digest:
            raise BlobNotFoundError(f"manifest {digest} is not a revision of {repository}")
        try:
            with open(self.blob_data_path(digest), "rb") as f:
                return f.read(MAX_MANIFEST_BYTES + 1)
        except FileNotFoundError:
            raise BlobNotFoundError(f"manifest {digest} is not in the store") from None
        except OSError as exc:
            raise StoreError(f"cannot read manifest {digest}: {exc.strerror}") from None

    def manifest(self, repository: str, digest: str) -> Manifest:
        """A manifest revision of ``repository``, parsed into the digests it references."""
        return parse_manifest(self.read_manifest(repository, digest))

    def resolve_tag(self, repository: str, tag: str) -> str:
        """The manifest digest a tag points at."""
        target = self._read_link(self.tag_link_path(repository, tag))
        if target is None:
            raise BlobNotFoundError(f"tag {tag} is not in {repository}")
        return reference.digest(target)

    def has_repository(self, repository: str) -> bool:
        """True when ``repository`` has blob links or manifests in the store."""
        return any(
            os.path.isdir(self._inside(self._repo(repository), sub))
            for sub in ("_layers", "_manifests")
        )

    # -- walks: streamed ------------------------------------------------------------------------

    def repositories(self) -> Iterator[str]:
        """Every repository in the store, streamed, in no particular order.

        Directories whose names are not valid repository names are logged and skipped.
        """
        top = self._inside(f"{DRIVER_ROOT}/repositories")
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
                    if entry.name in ("_layers", "_manifests") and not is_repository:
                        is_repository = True
                        yield prefix
                    continue
                name = f"{prefix}/{entry.name}" if prefix else entry.name
                try:
                    reference.repository_name(name)
                except InvalidReferenceError as exc:
                    _log.warning("skipping %s: %s", entry.path, exc)
                    continue
                yield from self._walk_repositories(entry.path, name)

    def layers(self, repository: str, shard: str = "") -> Iterator[str]:
        """Digests of the blobs linked into ``repository``, streamed, from the link paths.

        ``shard`` (a hex prefix) keeps the digests whose hex starts with it: the 16 shards
        ``"0"`` to ``"f"`` split a large repository into even parts.
        """
        return self._linked(self._inside(self._repo(repository), "_layers"), shard)

    def revisions(self, repository: str, shard: str = "") -> Iterator[str]:
        """Digests of the manifest revisions of ``repository``, streamed (``shard`` as above)."""
        return self._linked(self._inside(self._repo(repository), "_manifests", "revisions"), shard)

    def tags(self, repository: str) -> Iterator[tuple[str, str]]:
        """``(tag, manifest digest)`` of every tag of ``repository``, streamed."""
        directory = self._inside(self._repo(repository), "_manifests", "tags")
        for name in _subdirectories(directory):
            try:
                yield name, self.resolve_tag(repository, name)
            except (InvalidReferenceError, BlobNotFoundError) as exc:
                _log.warning("skipping tag %s of %s: %s", name, repository, exc)

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
            return os.read(fd, _MAX_LINK_BYTES).decode("ascii", "replace").strip()
        except OSError as exc:
            raise StoreError(f"cannot read link {path}: {exc.strerror}") from None
        finally:
            os.close(fd)


def _blob_path(algorithm: str, hex_: str) -> str:
    return f"{DRIVER_ROOT}/blobs/{algorithm}/{hex_[:2]}/{hex_}/data"


def _subdirectories(directory: str) -> Iterator[str]:
    try:
        it = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return
    with it:
        for entry in it:
            if entry.is_dir(follow_symlinks=False):
                yield entry.name
