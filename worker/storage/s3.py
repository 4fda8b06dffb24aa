"""The ``s3`` driver's storage, read-only: the tree of :mod:`worker.storage.paths` as object keys
of one bucket, under the driver's ``rootdirectory`` (without its leading slash). Two ways to read:

- **as the registry does** (events, ``exists``/``fetch``, reconcile): a GET of the link, then a
  HEAD of the blob's data, as a registry's cache miss costs; a batch runs on a few threads.
- **by listing** (re-warm): a link's key spells its digest, and a listing of ``blobs/`` gives
  every blob's size, so walking N links costs about N/1000 list requests for the links and as
  many for the sizes (:meth:`S3Store.fetch_listed`); a small repository's links come with the
  walk's listing of its folder. Listings stream (:mod:`worker.storage.s3listing`).

Every request the store sends is counted (:attr:`S3Store.requests`), retries included.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final, Literal

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from worker.errors import BlobNotFoundError, StoreError, StoreUnavailableError
from worker.registry import reference
from worker.registry.descriptor import Descriptor
from worker.registry.manifest import MAX_MANIFEST_BYTES, Manifest, parse_manifest
from worker.storage import paths
from worker.storage.base import MAX_LINK_BYTES, resolve_linked, stat_or_error, tagged_digest
from worker.storage.s3checks import Answers, Lister, Recheck, by_listing, rechecked
from worker.storage.s3listing import LISTERS, RepositoryWalk, linked

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["S3Store"]

_log = logging.getLogger(__name__)
_NOT_FOUND: Final = frozenset({"404", "NoSuchKey", "NotFound"})
#: Threads of a batch's link reads and of a walk's listings: S3 answers in tens of ms, so a
#: few requests in flight keep one process busy.
DEFAULT_WORKERS: Final = 16
#: A reconcile's batch this large is checked from listings (a few pages) rather than with a GET
#: and a HEAD a digest: below it, the listings' seeks would cost about as many requests.
_LISTED_FROM: Final = 64


class S3Store:
    """Reads an ``s3`` registry's storage: ``bucket``, keys under ``rootdirectory``.

    Credentials, region and endpoint come from the arguments when given, else from boto3's
    standard chain (``AWS_*`` variables, profiles, instance and pod roles).
    """

    def __init__(
        self,
        bucket: str,
        rootdirectory: str = "",
        *,
        region: str | None = None,
        endpoint: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        path_style: bool | None = None,
        verify: bool = True,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        if not bucket:
            raise StoreUnavailableError("no S3 bucket given")
        self.bucket = bucket
        root = rootdirectory.strip("/")
        self._prefix = f"{root}/" if root else ""
        self._workers = workers
        core = botocore.session.get_session()
        # No LastModified is ever read: parsing one per listed key (dateutil) would cost more
        # than the rest of a page.
        core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
        session = boto3.session.Session(
            botocore_session=core,
            aws_access_key_id=access_key or None,
            aws_secret_access_key=secret_key or None,
            region_name=region or None,
        )

        # S3-compatible stores (MinIO, Ceph, R2) want path-style addressing: boto3's "auto"
        # gives it for any endpoint but AWS's own, however given (AWS_ENDPOINT_URL_S3 too).
        style: Literal["path", "virtual", "auto"] = (
            "auto" if path_style is None else "path" if path_style else "virtual"
        )
        self._client: S3Client = session.client(
            "s3",
            endpoint_url=endpoint or None,
            verify=None if verify else False,
            config=Config(
                s3={"addressing_style": style},
                retries={"max_attempts": 3, "mode": "standard"},
                max_pool_connections=workers,
                connect_timeout=5,
                read_timeout=30,
            ),
        )
        self._requests = 0
        self._lock = threading.Lock()
        self._client.meta.events.register("before-send.s3", self._count)
        self._walk = RepositoryWalk(self._list, self._pages)
        self._lister = Lister(self._list, self._pages, self._executor, self.key)
        self._pool: ThreadPoolExecutor | None = None
        self._lister_pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0

    def __repr__(self) -> str:
        return f"S3Store(s3://{self.bucket}/{self._prefix})"

    @property
    def requests(self) -> int:
        """Requests sent to S3 so far by this store (retries included)."""
        return self._requests

    def _count(self, **_: Any) -> None:
        with self._lock:  # the threads of a batch send at once
            self._requests += 1

    def key(self, driver_path: str) -> str:
        """The object key of a driver path (see :mod:`worker.storage.paths`)."""
        return self._prefix + driver_path.lstrip("/")

    def _executor(self) -> ThreadPoolExecutor:
        # Made in the process that uses it: a Celery worker forks after the store may exist.
        if self._pool is None or self._pool_pid != os.getpid():
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="s3store")
            self._lister_pool = None
            self._pool_pid = os.getpid()
        return self._pool

    def check(self) -> None:
        """Raise StoreUnavailableError unless the bucket can be reached."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailableError(f"S3 bucket {self.bucket}: {_reason(exc)}") from None

    def _size(self, key: str) -> int | None:
        try:
            return self._client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return None
            raise StoreError(f"cannot stat s3://{self.bucket}/{key}: {_reason(exc)}") from None
        except BotoCoreError as exc:
            raise StoreError(f"cannot stat s3://{self.bucket}/{key}: {_reason(exc)}") from None

    def _read(self, key: str, limit: int) -> bytes | None:
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                return body.read(limit)
            finally:
                body.close()
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return None
            raise StoreError(f"cannot read s3://{self.bucket}/{key}: {_reason(exc)}") from None
        except BotoCoreError as exc:
            raise StoreError(f"cannot read s3://{self.bucket}/{key}: {_reason(exc)}") from None

    def _read_link(self, key: str) -> str | None:
        data = self._read(key, MAX_LINK_BYTES)
        return None if data is None else data.decode("ascii", "replace").strip()

    def stat(self, digest: str) -> Descriptor:
        """HEAD a blob's data; raise BlobNotFoundError when it is absent."""
        path = paths.blob_data(digest)
        size = self._size(self.key(path))
        if size is None:
            raise BlobNotFoundError(f"blob {digest} is not in the store")
        return Descriptor(digest=digest, size=size, path=path)

    def fetch_many(
        self,
        repository: str,
        digests: Sequence[str],
        sizes: MutableMapping[str, int] | None = None,
        *,
        manifests: bool = False,
    ) -> list[Descriptor | StoreError]:
        """:meth:`fetch` for a batch of one repository (on a few threads); errors in place.

        ``manifests``: the revision link first, then the blob link, as the manifest store does.
        """
        folders = [paths.layers(repository)]
        if manifests:
            folders.insert(0, paths.revisions(repository))
        for d in digests:
            reference.digest(d)

        def one(digest: str) -> Descriptor | StoreError:
            return self._fetch(repository, folders, digest, sizes)

        if len(digests) < 2:
            return [one(d) for d in digests]
        return list(self._executor().map(one, digests))

    def _fetch(
        self,
        repository: str,
        folders: list[str],
        digest: str,
        sizes: MutableMapping[str, int] | None,
    ) -> Descriptor | StoreError:
        def stat(d: str) -> Descriptor:
            known = sizes.get(d) if sizes is not None else None
            if known is not None:
                return Descriptor(d, known, path=paths.blob_data(d))
            found = self.stat(d)
            if sizes is not None:
                sizes[d] = found.size
            return found

        return resolve_linked(
            repository, digest, folders, lambda path: self._read_link(self.key(path)), stat
        )

    def fetch_listed(
        self,
        repository: str,
        digests: Sequence[str],
        sizes: MutableMapping[str, int] | None = None,
        *,
        manifests: bool = False,
        seen: MutableMapping[str, int] | None = None,
    ) -> list[Descriptor | StoreError]:
        """Descriptors of digests that :meth:`layers` (or :meth:`revisions`) just listed.

        The listing showed their links, so no link is read: the sizes come from a merge with a
        listing of ``blobs/`` (:mod:`worker.storage.s3merge`). Every size a page shows goes into
        ``seen`` (up to ``SEEN_LIMIT``), so the blobs shared by many repositories are listed
        once a run, not once a repository.
        """
        del manifests  # the walk that listed them checked the link already
        memo = seen if seen is not None else {}
        unknown = {d for d in digests if (sizes is None or d not in sizes) and d not in memo}
        return by_listing(self._lister, repository, digests, unknown, memo, sizes=sizes)

    def fetch_cached(
        self,
        repository: str | None,
        digests: Sequence[str],
        *,
        manifests: bool = False,
        seen: MutableMapping[str, int] | None = None,
    ) -> list[Descriptor | StoreError]:
        """What the store still holds of digests a cache names (reconcile's check).

        A small batch is resolved as :meth:`fetch_many` (or HEADs, without ``repository``). A
        large one is merged with listings: of the repository's link folders (a link's key says
        its digest), then of ``blobs/`` for the sizes, kept in ``seen`` as :meth:`fetch_listed`
        keeps them: a few pages for a thousand digests, not two thousand requests.
        """
        # A walk's batch (``seen`` given) is listed however small: its folder is one request,
        # where a link and a data request each would be two a digest.
        if len(digests) < _LISTED_FROM and (seen is None or repository is None):
            if repository is not None:
                return self.fetch_many(repository, digests, manifests=manifests)
            checked = [reference.digest(d) for d in digests]
            return list(self._executor().map(lambda d: stat_or_error(self.stat, d), checked))
        memo = seen if seen is not None else {}
        folders = [] if repository is None else [paths.layers(repository)]
        if repository is not None and manifests:  # live through either link will do
            folders.append(paths.revisions(repository))
        return by_listing(self._lister, repository, digests, None, memo, folders=folders)

    def recheck_scope(self, repository: str) -> str | None:
        """The key of the folder that the walk read whole and that showed ``repository``, with
        the repositories beside it: :meth:`fetch_rechecked` lists it again for them all. None:
        the walk listed the repository's link folders on their own."""
        folder = self._walk.scope(reference.repository_name(repository))
        return None if folder is None else folder.prefix

    def fetch_rechecked(
        self, checks: Sequence[Recheck], *, seen: MutableMapping[str, int]
    ) -> list[Answers]:
        """:meth:`fetch_cached` of a walk's writes, several at once, from listings made now:
        each ``(repository, digests, manifests, scope)``, ``scope`` from :meth:`recheck_scope`.
        A folder is listed once for every check of its scope; a repository's own link folders
        once for all its checks; ``seen`` as in :meth:`fetch_cached`
        (:func:`~worker.storage.s3checks.rechecked`)."""
        root = self.key(paths.REPOSITORIES) + "/"
        return rechecked(self._lister, root, checks, seen)

    def exists(self, repository: str, digest: str) -> bool:
        """True when ``digest`` is linked into ``repository`` and its data is in the store."""
        found = self.fetch_many(repository, [digest])[0]
        if isinstance(found, StoreError) and not isinstance(found, BlobNotFoundError):
            raise found
        return not isinstance(found, BlobNotFoundError)

    def read_manifest(self, repository: str, digest: str) -> bytes:
        """The bytes of a manifest revision of ``repository``."""
        if self._read_link(self.key(paths.revision_link(repository, digest))) != digest:
            raise BlobNotFoundError(f"manifest {digest} is not a revision of {repository}")
        data = self._read(self.key(paths.blob_data(digest)), MAX_MANIFEST_BYTES + 1)
        if data is None:
            raise BlobNotFoundError(f"manifest {digest} is not in the store")
        return data

    def manifest(self, repository: str, digest: str) -> Manifest:
        """A manifest revision of ``repository``, parsed into the digests it references."""
        return parse_manifest(self.read_manifest(repository, digest))

    def resolve_tag(self, repository: str, tag: str) -> str:
        """The manifest digest ``tag`` of ``repository`` points at: a GET of its tag link."""
        link = self._read_link(self.key(paths.tag_link(repository, tag)))
        return tagged_digest(repository, tag, link)

    def has_repository(self, repository: str) -> bool:
        """True when ``repository`` has blob links or manifests in the store."""
        folder = paths.repository(repository)
        return any(
            self._list(Prefix=self.key(f"{folder}/{sub}/"), MaxKeys=1).get("KeyCount", 0) > 0
            for sub in (paths.LAYERS, paths.MANIFESTS)
        )

    def _list(self, **kwargs: Any) -> dict[str, Any]:
        try:
            page: dict[str, Any] = dict(self._client.list_objects_v2(Bucket=self.bucket, **kwargs))
        except (ClientError, BotoCoreError) as exc:
            raise StoreError(f"cannot list s3://{self.bucket}: {_reason(exc)}") from None
        return page

    def _pages(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            page = self._list(**kwargs, **({"ContinuationToken": token} if token else {}))
            yield page
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def repositories(self) -> Iterator[str]:
        """Every repository, streamed (see :class:`RepositoryWalk`)."""
        return self._walk.repositories(self.key(paths.REPOSITORIES) + "/")

    def layers(self, repository: str, shard: str = "") -> Iterator[str]:
        """Digests linked into ``repository``, from a listing of its link keys, streamed."""
        listed = self._walk.listed(reference.repository_name(repository), 0, shard)
        if listed is not None:
            return listed
        return self._linked(self.key(paths.layers(repository)), shard)

    def revisions(self, repository: str, shard: str = "") -> Iterator[str]:
        """Digests of the manifest revisions of ``repository``, streamed (``shard`` as above)."""
        listed = self._walk.listed(reference.repository_name(repository), 1, shard)
        if listed is not None:
            return listed
        return self._linked(self.key(paths.revisions(repository)), shard)

    def _linked(self, folder: str, shard: str) -> Iterator[str]:
        return linked(self._pages, self._listers, folder, shard)

    def _listers(self) -> ThreadPoolExecutor:
        # Listings have threads of their own: a walk's listers wait on the walk, which may
        # need the fetch threads meanwhile.
        if self._lister_pool is None or self._pool_pid != os.getpid():
            self._executor()
            self._lister_pool = ThreadPoolExecutor(LISTERS, thread_name_prefix="s3list")
        return self._lister_pool


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _reason(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', '?')}: {error.get('Message', '')}".strip()
    return str(exc)
