"""The registry's cache keys: the one module that spells them, exactly as distribution does::

    repository::<repo>::blobs            SET   digests linked into <repo>         (membership)
    blobs::<digest>                      HASH  blobdescriptor (2.1+): digest, size, mediatype
                                               layerinfo (2.0):      path, length
    repository::<repo>::blobs::<digest>  HASH  mediatype (blobdescriptor: per-repository override)

The registry's own lookup: SISMEMBER membership, then HMGET ``blobs::<digest>``, then HGET the
repository hash. Nothing else lives in the registry's DB.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "GLOBAL_FIELDS",
    "MEDIATYPE",
    "blob_key",
    "described_pattern",
    "digest_of_blob_key",
    "named_by_key",
    "repository_blob_key",
    "repository_blobs_key",
    "repository_of_blobs_key",
    "repository_pattern",
]

_REPOSITORY: Final = "repository::"
_BLOBS: Final = "::blobs"
_BLOB: Final = "blobs::"

#: The field of a repository hash.
MEDIATYPE: Final = "mediatype"
#: The fields of ``blobs::<digest>`` in the order a read asks for them: the three of
#: blobdescriptor, then the two of layerinfo.
GLOBAL_FIELDS: Final = ("digest", "size", MEDIATYPE, "path", "length")


def repository_blobs_key(repository: str) -> str:
    """``repository::<repo>::blobs``: the membership set."""
    return f"{_REPOSITORY}{repository}{_BLOBS}"


def blob_key(digest: str) -> str:
    """``blobs::<digest>``: the global descriptor hash."""
    return f"{_BLOB}{digest}"


def repository_blob_key(repository: str, digest: str) -> str:
    """``repository::<repo>::blobs::<digest>``: the repository's media type of a blob."""
    return f"{_REPOSITORY}{repository}{_BLOBS}::{digest}"


def repository_pattern() -> str:
    """A SCAN pattern matching every membership set (and the repository hashes, see below)."""
    return f"{_REPOSITORY}*{_BLOBS}"


def repository_of_blobs_key(key: str) -> str | None:
    """The repository of a membership key; None for a repository hash that matched too."""
    name = key[len(_REPOSITORY) : -len(_BLOBS)]
    return None if "::" in name else name


def described_pattern() -> str:
    """A SCAN pattern matching every global descriptor hash."""
    return f"{_BLOB}*"


def digest_of_blob_key(key: str) -> str:
    """The digest of a ``blobs::<digest>`` key."""
    return key[len(_BLOB) :]


def named_by_key(key: str) -> tuple[str | None, str | None]:
    """What a key of the cache names: ``(repository, None)`` for a membership set,
    ``(None, digest)`` for a global descriptor, ``(repository, digest)`` for a repository hash,
    ``(None, None)`` for a key that is none of the registry's."""
    if key.startswith(_BLOB):
        return None, digest_of_blob_key(key)
    if not key.startswith(_REPOSITORY):
        return None, None
    if key.endswith(_BLOBS):
        name = repository_of_blobs_key(key)
        if name is not None:
            return name, None
    repository, sep, digest = key[len(_REPOSITORY) :].rpartition(_BLOBS + "::")
    return (repository, digest) if sep else (None, None)
