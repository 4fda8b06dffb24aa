"""Interleavings and faults injected into a writer, for the delete-wins model: no sleeps.

:class:`HookedStore` wraps a real store and runs a hook right after its N-th read (the writer
has an answer that a delete is about to make stale); :class:`FaultyCache` is a real cache whose
next write succeeds and then raises, as a worker killed before its re-check (:class:`Killed`)
or a write whose reply was lost (a :class:`~worker.errors.CacheError`).
:class:`Storage` changes what a registry's storage holds, on disk or in an S3 bucket.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from typing import Any

from worker.cache import BlobDescriptorCache
from worker.errors import CacheError
from worker.storage.filesystem import FilesystemStore
from worker.storage.s3 import S3Store

__all__ = ["FaultyCache", "HookedStore", "Killed", "Storage", "lost_reply"]

#: The reads of blobs a writer makes of a store: after the N-th of them, the hook runs.
_READS = frozenset(
    {"fetch_many", "fetch_listed", "fetch_cached", "fetch_rechecked", "exists", "stat", "manifest"}
)


class Killed(BaseException):
    """Raised to stand for a worker killed at that point: nothing of it catches this."""


class HookedStore:
    """A real store whose ``at``-th read runs ``hook`` once, right after it returned."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._hook: Callable[[], None] | None = None
        self._left = 0

    def arm(self, at: int, hook: Callable[[], None]) -> None:
        """Run ``hook`` after the ``at``-th read from now on (1: the next one)."""
        self._left, self._hook = at, hook

    def disarm(self) -> None:
        """No hook any more."""
        self._hook = None

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in _READS:
            return attr

        def read(*args: Any, **kwargs: Any) -> Any:
            answer = attr(*args, **kwargs)
            if self._hook is not None:
                self._left -= 1
                if self._left <= 0:
                    hook, self._hook = self._hook, None
                    hook()
            return answer

        return read


class FaultyCache(BlobDescriptorCache):
    """A real cache whose next write, once armed, is written and then raises ``fault``."""

    fault: BaseException | None = None

    def _after_write(self) -> None:
        if self.fault is not None:
            fault, self.fault = self.fault, None
            raise fault

    def add(self, repository: str, digest: str) -> None:
        super().add(repository, digest)
        self._after_write()

    def set_descriptors(self, *args: Any, **kwargs: Any) -> None:
        super().set_descriptors(*args, **kwargs)
        self._after_write()

    def set_descriptor_groups(self, *args: Any, **kwargs: Any) -> None:
        super().set_descriptor_groups(*args, **kwargs)
        self._after_write()


def lost_reply() -> CacheError:
    """What a write whose reply never came raises: Redis did the write."""
    return CacheError("cache Redis: Timeout reading from socket (the write was done)")


class Storage:
    """What a registry writes and deletes in its storage, by driver path: disk or S3."""

    def __init__(self, store: FilesystemStore | S3Store) -> None:
        self.store = store

    def wipe(self) -> None:
        """Nothing stored any more, as a new registry's storage."""
        if isinstance(self.store, S3Store):
            client = self.store._client
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.store.bucket)
            for page in pages:
                for item in page.get("Contents", []):
                    client.delete_object(Bucket=self.store.bucket, Key=item["Key"])
            return
        shutil.rmtree(self.store.root, ignore_errors=True)
        self.store.root.mkdir(parents=True)

    def write(self, driver_path: str, data: bytes) -> None:
        """Put ``data`` at ``driver_path``."""
        if isinstance(self.store, S3Store):
            self.store._client.put_object(
                Bucket=self.store.bucket, Key=self.store.key(driver_path), Body=data
            )
            return
        path = self.store.os_path(driver_path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    def remove(self, driver_path: str) -> None:
        """Delete what is at ``driver_path`` (nothing there: nothing to do)."""
        if isinstance(self.store, S3Store):
            self.store._client.delete_object(
                Bucket=self.store.bucket, Key=self.store.key(driver_path)
            )
            return
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.store.os_path(driver_path))
