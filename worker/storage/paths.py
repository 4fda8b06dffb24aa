"""The registry's storage tree: the one module that spells every storage path.

Every driver (filesystem, S3, GCS, Azure) keeps the same tree under its root; these are the
driver's paths, which start at the driver's root. A store maps them onto its medium (a
directory under ``rootdirectory``, object keys under a prefix)::

    /docker/registry/v2/                             <- DRIVER_ROOT
    ├── blobs/<alg>/<hex[:2]>/<hex>/data             blob bytes (layers, configs, manifests)
    └── repositories/<name>/                         <name> may hold slashes: org/team/app
        ├── _layers/<alg>/<hex>/link                 blob linked into the repo ("<alg>:<hex>")
        ├── _manifests/revisions/<alg>/<hex>/link    manifest revision of the repo
        ├── _manifests/tags/<tag>/current/link       what a tag points at
        └── _uploads/...                             uploads in progress (ignored)

A directory under ``repositories/`` is a repository when it holds ``_layers`` or ``_manifests``;
repositories nest (``org/app`` and ``org/app/sub`` can both exist).

Every name and digest is validated (:mod:`worker.registry.reference`) before it becomes a path:
no component can be empty, ``.`` or ``..``.
"""

from __future__ import annotations

from typing import Final

from worker.registry import reference

__all__ = [
    "DRIVER_ROOT",
    "LAYERS",
    "MANIFESTS",
    "REPOSITORIES",
    "blob_data",
    "layer_link",
    "layers",
    "repository",
    "revision_link",
    "revisions",
    "tag_link",
]

#: Where the registry's storage driver keeps everything, relative to the driver's root.
DRIVER_ROOT: Final = "/docker/registry/v2"
#: The folder of every repository.
REPOSITORIES: Final = f"{DRIVER_ROOT}/repositories"
#: The two folders that make a directory under ``repositories/`` a repository.
LAYERS: Final = "_layers"
MANIFESTS: Final = "_manifests"


def blob_data(digest: str) -> str:
    """The data of a blob: ``/docker/registry/v2/blobs/<alg>/<hex[:2]>/<hex>/data``."""
    algorithm, hex_ = reference.split_digest(digest)
    return blob_data_unchecked(algorithm, hex_)


def blob_data_unchecked(algorithm: str, hex_: str) -> str:
    """:func:`blob_data` of a digest the caller validated already (a walk's hot path)."""
    return f"{DRIVER_ROOT}/blobs/{algorithm}/{hex_[:2]}/{hex_}/data"


def repository(name: str) -> str:
    """The folder of a repository."""
    return f"{REPOSITORIES}/{reference.repository_name(name)}"


def layers(name: str) -> str:
    """The folder of a repository's blob links: ``<alg>/<hex>/link`` below it."""
    return f"{repository(name)}/{LAYERS}"


def revisions(name: str) -> str:
    """The folder of a repository's manifest revisions: ``<alg>/<hex>/link`` below it."""
    return f"{repository(name)}/{MANIFESTS}/revisions"


def layer_link(name: str, digest: str) -> str:
    """The link that says ``digest`` is a blob of repository ``name``."""
    algorithm, hex_ = reference.split_digest(digest)
    return f"{layers(name)}/{algorithm}/{hex_}/link"


def revision_link(name: str, digest: str) -> str:
    """The link that says ``digest`` is a manifest revision of repository ``name``."""
    algorithm, hex_ = reference.split_digest(digest)
    return f"{revisions(name)}/{algorithm}/{hex_}/link"


def tag_link(name: str, tag: str) -> str:
    """The link that says what ``tag`` of repository ``name`` points at."""
    return f"{repository(name)}/{MANIFESTS}/tags/{reference.tag(tag)}/current/link"
