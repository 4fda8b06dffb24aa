"""The registry's Redis blob-descriptor cache: distribution's ``BlobDescriptorService`` over Redis,
reading and writing exactly the keys of :mod:`worker.cache.keys`.

The registry version (:class:`~worker.registry.versions.RegistryVersion`) decides the fields:
2.1 to 3.x read the blobdescriptor fields, 2.0's original ``cachedLayerService`` the layerinfo
ones, and ``2.0+2`` writes both in the same hashes (each registry ignores the other's fields;
a clear removes only the warmer's own). Nothing else is ever written to the registry's DB.

Reads follow the registry's lookup, but a batch of stats (one repository's or several's) asks
membership, the global hash and the repository hash of every digest at once: one Lua script,
or on a Redis Cluster one pipeline (:mod:`worker.cache.batches`), where the registry needs three
round trips a blob. A descriptor counts as cached only when the fields its version needs are
there: digest and size (blobdescriptor), path and length (layerinfo), and in a repository its
media type (3.x treats a missing one as a miss, so we do too); a corrupt size is a miss. Writes
are batched the same way and idempotent: per blob the commands the registry sends, so a repeated
write changes nothing; behind a Sentinel a write counts once a replica has it. The core writes
only through :class:`~worker.core.writes.CacheWriter`, where a delete always wins.

Walks over what is cached (repositories, members, described digests) stream with SCAN, a batch
at a time; :meth:`BlobDescriptorCache.key_count` is how an emptied cache is noticed.

Redis failures surface as :class:`~worker.errors.CacheError`; the caller decides whether that is
fatal (a warm run) or a reason to fall back to the store (a lookup)."""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from typing import Any

import redis

from worker.cache.batches import Batches, PipelineBatches, ScriptBatches, execute_replicated
from worker.cache.keys import (
    GLOBAL_FIELDS,
    blob_key,
    described_pattern,
    digest_of_blob_key,
    named_by_key,
    repository_blob_key,
    repository_blobs_key,
    repository_of_blobs_key,
    repository_pattern,
)
from worker.config.connections import is_cluster, is_sentinel, sentinels_name_the_same_master
from worker.errors import CacheError, CacheMissError
from worker.registry import reference
from worker.registry.descriptor import Descriptor
from worker.registry.mediatypes import OCTET_STREAM
from worker.registry.versions import RegistryVersion

__all__ = ["BlobDescriptorCache"]


class BlobDescriptorCache:
    """The registry's blob-descriptor cache in one Redis DB (or Cluster), for one version.

    The interface is distribution's: :meth:`stat`, :meth:`set_descriptor`, :meth:`clear` (with
    an optional repository scope) and :meth:`contains`, :meth:`add`; plus :meth:`stat_many` and
    :meth:`set_descriptors` that do a whole batch in one round trip, and :meth:`stat_groups` and
    :meth:`set_descriptor_groups` that do so for several repositories at once.
    """

    def __init__(self, client: redis.Redis, version: RegistryVersion = RegistryVersion.V3) -> None:
        self._redis = client
        self.version = version
        # Behind a Sentinel a write counts once a replica has it: a failover cannot drop it.
        self._replicas = 1 if is_sentinel(client) else 0
        self._still_master = (
            (lambda: sentinels_name_the_same_master(client)) if self._replicas else None
        )
        self._batches: Batches = (
            PipelineBatches(client)
            if is_cluster(client)
            else ScriptBatches(client, self._replicas, self._still_master)
        )

    def __repr__(self) -> str:
        return f"BlobDescriptorCache({self._redis!r}, version={self.version.value!r})"

    # -- membership -----------------------------------------------------------------------------

    def contains(self, repository: str, digest: str) -> bool:
        """True when ``digest`` is in the repository's membership set."""
        key = repository_blobs_key(reference.repository_name(repository))
        member = reference.digest(digest)
        return bool(self._call(self._redis.sismember, key, member))

    def add(self, repository: str, digest: str) -> None:
        """Add ``digest`` to the repository's membership set."""
        key = repository_blobs_key(reference.repository_name(repository))
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

    def stat_groups(
        self, groups: Mapping[str, Sequence[str]]
    ) -> dict[str, list[Descriptor | None]]:
        """:meth:`stat_many` of several repositories (repository to digests), in one round trip."""
        for repository, digests in groups.items():
            reference.repository_name(repository)
            for d in digests:
                reference.digest(d)
        found = iter(self._stat_groups([(r, d) for r, d in groups.items() if d]))
        return {r: next(found) if d else [] for r, d in groups.items()}

    def _stat_many(self, digests: Sequence[str], repository: str | None) -> list[Descriptor | None]:
        return self._stat_groups([(repository, digests)])[0] if digests else []

    def _stat_groups(
        self, groups: Sequence[tuple[str | None, Sequence[str]]]
    ) -> list[list[Descriptor | None]]:
        # One read of every group; all are scoped (a repository each) or none is.
        if not groups:
            return []
        scoped = groups[0][0] is not None
        # The per-repository media type exists only in the blobdescriptor schema.
        override = scoped and self.version.has_descriptor
        keys: list[str] = []
        args: list[str | int] = [int(scoped), int(override), *GLOBAL_FIELDS]
        for repository, digests in groups:
            if repository is not None:
                keys.append(repository_blobs_key(repository))
            for d in digests:
                keys.append(blob_key(d))
                if override and repository is not None:
                    keys.append(repository_blob_key(repository, d))
            args += [len(digests), *digests]
        reply = iter(self._call(self._batches.read, keys, args))
        return [self._found(digests, reply, override) for _, digests in groups]

    def _found(
        self, digests: Sequence[str], reply: Iterator[Any], override: bool
    ) -> list[Descriptor | None]:
        found: list[Descriptor | None] = []
        for d in digests:
            if not next(reply):
                found.append(None)
                continue
            fields = [next(reply) for _ in GLOBAL_FIELDS]
            found.append(self._decode(d, fields, next(reply), override))
        return found

    def _decode(
        self, digest: str, fields: list[bytes | None], override: bytes | None, scoped: bool
    ) -> Descriptor | None:
        stored_digest, size, mediatype, path, length = fields
        incomplete_descriptor = self.version.has_descriptor and (
            stored_digest is None or size is None or (scoped and override is None)
        )
        incomplete_layerinfo = self.version.has_layerinfo and (path is None or length is None)
        if incomplete_descriptor or incomplete_layerinfo:
            return None
        raw_size = size if self.version.has_descriptor else length
        media = override or mediatype
        try:
            return Descriptor(
                digest=digest,
                size=int(raw_size or b""),
                media_type=media.decode() if media is not None else OCTET_STREAM,
                path=path.decode() if path is not None else None,
            )
        except ValueError:
            return None  # a corrupt size is a miss: the warm writes it anew

    def set_descriptor(self, descriptor: Descriptor, repository: str | None = None) -> None:
        """Write a descriptor (and, with a repository, its membership and override): one trip."""
        self.set_descriptors([descriptor], repository)

    def set_descriptors(
        self,
        descriptors: Iterable[Descriptor],
        repository: str | None = None,
        *,
        described: Container[str] = (),
    ) -> None:
        """Write many descriptors in one round trip.

        Digests in ``described`` get membership and the repository hash only: the caller
        wrote their global hash moments ago (a walk meets a shared layer once per repository).
        """
        if repository is not None:
            reference.repository_name(repository)
        batch = list(descriptors)
        self._check(batch)
        self._set_descriptors(batch, repository, described)

    def set_descriptor_groups(
        self,
        groups: Mapping[str, Sequence[Descriptor]],
        described: Mapping[str, Container[str]] | None = None,
    ) -> None:
        """:meth:`set_descriptors` of several repositories (repository to descriptors), in one
        round trip; ``described``: each repository's, as there."""
        for repository, batch in groups.items():
            reference.repository_name(repository)
            self._check(batch)
        known = described or {}
        self._write_groups([(r, b, known.get(r, ())) for r, b in groups.items() if b])

    def _check(self, batch: Iterable[Descriptor]) -> None:
        for desc in batch:
            reference.digest(desc.digest)
            if self.version.has_layerinfo and desc.path is None:
                raise ValueError(f"the layerinfo schema needs the path of {desc.digest}")

    def _set_descriptors(
        self, batch: list[Descriptor], repository: str | None, described: Container[str] = ()
    ) -> None:
        if batch:
            self._write_groups([(repository, batch, described)])

    def _write_groups(
        self, groups: Sequence[tuple[str | None, Sequence[Descriptor], Container[str]]]
    ) -> None:
        # One write of every group; all are scoped (a repository each) or none is.
        if not groups:
            return
        scoped = groups[0][0] is not None
        override = scoped and self.version.has_descriptor
        keys: list[str] = []
        args: list[str | int] = [
            int(scoped),
            int(self.version.has_descriptor),
            int(self.version.has_layerinfo),
        ]
        for repository, batch, described in groups:
            if repository is not None:
                keys.append(repository_blobs_key(repository))
            args.append(len(batch))
            for desc in batch:
                keys.append(blob_key(desc.digest))
                if override and repository is not None:
                    keys.append(repository_blob_key(repository, desc.digest))
                global_ = 0 if repository is not None and desc.digest in described else 1
                args += [desc.digest, desc.size, desc.media_type, desc.path or "", global_]
        self._call(self._batches.write, keys, args)

    def clear(self, digest: str, repository: str | None = None) -> None:
        """Forget ``digest``: in ``repository`` (membership and override), or globally."""
        self.clear_many([digest], repository)

    def clear_many(self, digests: Sequence[str], repository: str | None = None) -> None:
        """:meth:`clear` for many digests, in one round trip."""
        for d in digests:
            reference.digest(d)
        if repository is not None:
            reference.repository_name(repository)
        self._clear_many(digests, repository)

    def _clear_many(self, digests: Sequence[str], repository: str | None) -> None:
        if not digests:
            return
        pipe = self._redis.pipeline(transaction=False)
        if repository is not None:
            pipe.srem(repository_blobs_key(repository), *digests)
            for d in digests:  # one key a command: a Cluster keeps them in different slots
                pipe.delete(repository_blob_key(repository, d))
        else:
            # Only our schema's fields: a registry of the other generation may share the hash.
            fields = [f for f in GLOBAL_FIELDS if self._writes_field(f)]
            for d in digests:
                pipe.hdel(blob_key(d), *fields)
        self._call(execute_replicated, pipe, self._replicas, self._still_master)

    def _writes_field(self, field: str) -> bool:
        if field in ("path", "length"):
            return self.version.has_layerinfo
        return self.version.has_descriptor

    # -- walks over what is cached: streamed with SCAN, a batch at a time -----------------------

    def repositories(self, batch: int = 1000) -> Iterator[str]:
        """Every repository that has a membership set, streamed (SCAN: no blocking KEYS)."""
        for key in self._scan(self._redis.scan_iter, repository_pattern(), batch):
            name = repository_of_blobs_key(key.decode() if isinstance(key, bytes) else key)
            if name is not None:
                yield name

    def members(self, repository: str, batch: int = 1000) -> Iterator[list[str]]:
        """The digests of a repository's membership set, in batches (SSCAN)."""
        key = repository_blobs_key(reference.repository_name(repository))
        chunk: list[str] = []
        for member in self._scan(self._redis.sscan_iter, key, None, batch):
            chunk.append(member.decode() if isinstance(member, bytes) else member)
            if len(chunk) >= batch:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def described(self, batch: int = 1000) -> Iterator[list[str]]:
        """Digests that have a global descriptor hash, in batches."""
        chunk: list[str] = []
        for key in self._scan(self._redis.scan_iter, described_pattern(), batch):
            chunk.append(digest_of_blob_key(key.decode() if isinstance(key, bytes) else key))
            if len(chunk) >= batch:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def sample(self, count: int) -> list[tuple[str | None, str]]:
        """About ``count`` entries picked at random: ``(repository, digest)`` of a membership,
        ``(None, digest)`` of a global descriptor; fewer when the cache holds fewer.

        RANDOMKEY, then SRANDMEMBER of a membership set: a pick costs O(1) however large the
        cache. The members of small repositories are likelier picks than those of large ones:
        an audit's sample, not a census (``warmer fsck`` without ``--sample`` walks them all).
        """
        picked: dict[tuple[str | None, str], None] = {}
        for _ in range(3 * count):  # a pick may repeat, or name a key of no entry
            if len(picked) >= count:
                break
            raw = self._call(self._redis.randomkey)
            if raw is None:  # an empty DB
                break
            repository, digest = named_by_key(raw.decode() if isinstance(raw, bytes) else raw)
            if repository is not None and digest is None:
                member = self._call(self._redis.srandmember, repository_blobs_key(repository))
                digest = member.decode() if isinstance(member, bytes) else member
            if digest is not None:
                picked[repository, digest] = None
        return list(picked)

    def is_empty(self) -> bool:
        """True when the cache's DB holds no key at all (it holds only the registry's)."""
        return self.key_count() == 0

    def key_count(self) -> int:
        """How many keys the cache's DB holds (DBSIZE; a Cluster's summed over its primaries):
        a sudden drop means it was emptied."""
        if is_cluster(self._redis):
            # DBSIZE alone goes to one node; every primary's count, summed, is the cache's.
            cluster: Any = self._redis
            return int(self._call(lambda: cluster.dbsize(target_nodes="primaries")))
        return int(self._call(self._redis.dbsize))

    def ping(self) -> None:
        """Raise CacheError unless the cache's Redis answers."""
        self._call(self._redis.ping)

    def _scan(self, fn: Any, *args: Any) -> Iterator[Any]:
        # A SCAN iterator meets Redis while it is consumed: translate its errors there.
        try:
            yield from fn(*args)
        except redis.RedisError as exc:
            raise CacheError(f"cache Redis: {exc}") from exc

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except redis.RedisError as exc:
            raise CacheError(f"cache Redis: {exc}") from exc
