"""The registry's Redis blob-descriptor cache: the one module that spells every key and field.

The keys, exactly as distribution reads and writes them::

    repository::<repo>::blobs            SET   digests linked into <repo>         (membership)
    blobs::<digest>                      HASH  blobdescriptor (2.1+): digest, size, mediatype
                                               layerinfo (2.0):      path, length
    repository::<repo>::blobs::<digest>  HASH  mediatype (blobdescriptor: per-repository override)

``Schema.BLOBDESCRIPTOR`` writes what registry 2.1 to 3.x read; ``Schema.LAYERINFO`` what the
original 2.0 ``cachedLayerService`` read; ``Schema.BOTH`` both field sets in the same hashes (each
registry ignores the other's fields). Nothing else is ever written to the registry's DB.

Reads follow the registry's lookup, but a repository-scoped stat sends membership, the global
hash and the repository hash in one pipeline: one round trip per hit where the registry needs
three. A descriptor counts as cached only when every field the schema writes is there (3.x treats
a missing repository media type as a miss, so we do too). Writes are idempotent and pipelined
without MULTI: a multi-key transaction is not atomic on a Redis Cluster anyway.

Redis failures surface as :class:`~worker.errors.CacheError`; the caller decides whether that is
fatal (a warm run) or a reason to fall back to the store (a lookup).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any, Final

import redis

from worker import reference
from worker.descriptor import DEFAULT_MEDIA_TYPE, Descriptor
from worker.errors import CacheError, CacheMissError

__all__ = ["BlobDescriptorCache", "Schema"]

# The three key spellings. Nothing outside this module builds a key.


def _repository_blobs_key(repository: str) -> str:
    return f"repository::{repository}::blobs"


def _blob_key(digest: str) -> str:
    return f"blobs::{digest}"


def _repository_blob_key(repository: str, digest: str) -> str:
    return f"repository::{repository}::blobs::{digest}"


class Schema(StrEnum):
    """Which generation of the registry's cache schema to read and write."""

    BLOBDESCRIPTOR = "blobdescriptor"
    LAYERINFO = "layerinfo"
    BOTH = "both"

    @property
    def has_descriptor(self) -> bool:
        """True when the 2.1+ fields (digest, size, mediatype) are part of this schema."""
        return self is not Schema.LAYERINFO

    @property
    def has_layerinfo(self) -> bool:
        """True when the 2.0 fields (path, length) are part of this schema."""
        return self is not Schema.BLOBDESCRIPTOR


_MEDIATYPE: Final = "mediatype"
# Field order of the HMGET on blobs::<digest>; positions are read back by _decode.
_GLOBAL_FIELDS: Final = ("digest", "size", "mediatype", "path", "length")


class BlobDescriptorCache:
    """The registry's blob-descriptor cache in one Redis DB, in one schema.

    The interface is distribution's: :meth:`stat`, :meth:`set_descriptor`, :meth:`clear` (with
    an optional repository scope) and :meth:`contains`, :meth:`add`; plus :meth:`stat_many` and
    :meth:`set_descriptors` that do a whole batch in one round trip.
    """

    def __init__(self, client: redis.Redis, schema: Schema = Schema.BLOBDESCRIPTOR) -> None:
        self._redis = client
        self.schema = schema

    def __repr__(self) -> str:
        return f"BlobDescriptorCache({self._redis!r}, schema={self.schema.value!r})"

    # -- membership -----------------------------------------------------------------------------

    def contains(self, repository: str, digest: str) -> bool:
        """True when ``digest`` is in the repository's membership set."""
        key = _repository_blobs_key(reference.repository_name(repository))
        member = reference.digest(digest)
        return bool(self._call(self._redis.sismember, key, member))

    def add(self, repository: str, digest: str) -> None:
        """Add ``digest`` to the repository's membership set."""
        key = _repository_blobs_key(reference.repository_name(repository))
        self._call(self._redis.sadd, key, reference.digest(digest))

    # -- descriptors ----------------------------------------------------------------------------

    def stat(self, digest: str, repository: str | None = None) -> Descriptor:
        """The cached descriptor of ``digest`` (in ``repository``, when given).

        Raise CacheMissError when it is not a member of the repository or not complete.
        """
        found = self.stat_many([reference.digest(digest)], repository)[0]
        if found is None:
            where = f" in {repository}" if repository else ""
            raise CacheMissError(f"{digest}{where} is not cached")
        return found

    def stat_many(
        self, digests: Sequence[str], repository: str | None = None
    ) -> list[Descriptor | None]:
        """Stat every digest in one round trip; ``None`` stands for a miss."""
        if repository is not None:
            reference.repository_name(repository)
        for d in digests:
            reference.digest(d)
        return self._stat_many(digests, repository)

    def _stat_many(self, digests: Sequence[str], repository: str | None) -> list[Descriptor | None]:
        if not digests:
            return []
        pipe = self._redis.pipeline(transaction=False)
        scoped = repository is not None and self.schema.has_descriptor
        for d in digests:
            if repository is not None:
                pipe.sismember(_repository_blobs_key(repository), d)
            pipe.hmget(_blob_key(d), _GLOBAL_FIELDS)
            if scoped:
                assert repository is not None  # for mypy: scoped implies it
                pipe.hget(_repository_blob_key(repository, d), _MEDIATYPE)
        replies = iter(self._call(pipe.execute))
        found: list[Descriptor | None] = []
        for d in digests:
            member = bool(next(replies)) if repository is not None else True
            fields = next(replies)
            override = next(replies) if scoped else None
            found.append(self._decode(d, fields, override, scoped) if member else None)
        return found

    def _decode(
        self, digest: str, fields: list[bytes | None], override: bytes | None, scoped: bool
    ) -> Descriptor | None:
        stored_digest, size, mediatype, path, length = fields
        incomplete_descriptor = self.schema.has_descriptor and (
            stored_digest is None or size is None or (scoped and override is None)
        )
        incomplete_layerinfo = self.schema.has_layerinfo and (path is None or length is None)
        if incomplete_descriptor or incomplete_layerinfo:
            return None
        raw_size = size if self.schema.has_descriptor else length
        media = override or mediatype
        try:
            return Descriptor(
                digest=digest,
                size=int(raw_size or b""),
                media_type=media.decode() if media is not None else DEFAULT_MEDIA_TYPE,
                path=path.decode() if path is not None else None,
            )
        except ValueError:
            return None  # a corrupt size is a miss: the warm writes it anew

    def set_descriptor(self, descriptor: Descriptor, repository: str | None = None) -> None:
        """Write a descriptor (and, with a repository, its membership and override): one trip."""
        self.set_descriptors([descriptor], repository)

    def set_descriptors(
        self, descriptors: Iterable[Descriptor], repository: str | None = None
    ) -> None:
        """Write many descriptors in one pipelined round trip."""
        if repository is not None:
            reference.repository_name(repository)
        batch = list(descriptors)
        for desc in batch:
            reference.digest(desc.digest)
            if self.schema.has_layerinfo and desc.path is None:
                raise ValueError(f"the layerinfo schema needs the path of {desc.digest}")
        self._set_descriptors(batch, repository)

    def _set_descriptors(self, batch: list[Descriptor], repository: str | None) -> None:
        if not batch:
            return
        pipe = self._redis.pipeline(transaction=False)
        if repository is not None:
            # One SADD for the batch: the same membership as one per blob, in one command.
            pipe.sadd(_repository_blobs_key(repository), *(d.digest for d in batch))
        for desc in batch:
            key = _blob_key(desc.digest)
            items: list[str | int] = []
            if self.schema.has_descriptor:
                items += ["digest", desc.digest, "size", desc.size]
            if self.schema.has_layerinfo:
                assert desc.path is not None  # checked by set_descriptors
                items += ["path", desc.path, "length", desc.size]
            pipe.hset(key, items=items)
            if self.schema.has_descriptor:
                # The registry keeps the first media type it saw globally; ours never wins.
                pipe.hsetnx(key, _MEDIATYPE, desc.media_type)
                if repository is not None:
                    pipe.hset(
                        _repository_blob_key(repository, desc.digest), _MEDIATYPE, desc.media_type
                    )
        self._call(pipe.execute)

    def clear(self, digest: str, repository: str | None = None) -> None:
        """Forget ``digest``: in ``repository`` (membership and override), or globally."""
        reference.digest(digest)
        if repository is not None:
            reference.repository_name(repository)
        self._clear(digest, repository)

    def _clear(self, digest: str, repository: str | None) -> None:
        pipe = self._redis.pipeline(transaction=False)
        if repository is not None:
            pipe.srem(_repository_blobs_key(repository), digest)
            pipe.delete(_repository_blob_key(repository, digest))
        else:
            # Only our schema's fields: a registry of the other generation may share the hash.
            fields = [f for f in _GLOBAL_FIELDS if self._writes_field(f)]
            pipe.hdel(_blob_key(digest), *fields)
        self._call(pipe.execute)

    def _writes_field(self, field: str) -> bool:
        if field in ("path", "length"):
            return self.schema.has_layerinfo
        return self.schema.has_descriptor

    def ping(self) -> None:
        """Raise CacheError unless the cache's Redis answers."""
        self._call(self._redis.ping)

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except redis.RedisError as exc:
            raise CacheError(f"cache Redis: {exc}") from exc
