"""A delete wins: a push and a delete of the same blob, handled by two workers, interleave in
every order, and once both are handled the membership is gone when the link is gone.

The interleaving is made deterministic: the push's store or cache is wrapped so that the other
worker's whole delete runs at one chosen point of the push (real Redis, a real store on disk).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

from bench.layout import LayoutWriter
from worker.cache import BlobDescriptorCache
from worker.core.blobservice import CachedBlobService
from worker.core.pipeline import process
from worker.errors import StoreUnavailableError
from worker.registry.events import Event, Kind
from worker.state import StateStore
from worker.storage import paths
from worker.storage.filesystem import FilesystemStore

REPO = "team/app"


class _HookedStore:
    """The push worker's store: runs ``hook`` once, right after its first batch read."""

    def __init__(self, store: FilesystemStore, hook: Callable[[], None]) -> None:
        self._store = store
        self._hook: Callable[[], None] | None = hook

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def fetch_many(
        self, repository: str, digests: Sequence[str], sizes: Any = None, *, manifests: bool = False
    ) -> Any:
        found = self._store.fetch_many(repository, digests, sizes, manifests=manifests)
        if self._hook is not None:
            hook, self._hook = self._hook, None
            hook()  # the link was read; the membership is not written yet
        return found


class _HookedCache(BlobDescriptorCache):
    """The push worker's cache: runs ``hook`` once, right after its first descriptor write."""

    def __init__(self, client: redis.Redis, hook: Callable[[], None]) -> None:
        super().__init__(client)
        self._hook: Callable[[], None] | None = hook

    def set_descriptor_groups(self, *args: Any, **kwargs: Any) -> None:
        super().set_descriptor_groups(*args, **kwargs)
        if self._hook is not None:
            hook, self._hook = self._hook, None
            hook()  # the membership is written; the push has not finished


def _setup(layout: LayoutWriter, cache_redis: redis.Redis, state: StateStore) -> tuple[str, Any]:
    layout.store.root.mkdir(parents=True, exist_ok=True)
    digest = layout.blob(b"a layer that is deleted")
    layout.link(REPO, digest)
    other_worker = CachedBlobService(BlobDescriptorCache(cache_redis), layout.store)

    def delete() -> None:
        # The registry removes the link, then notifies; another worker handles the delete.
        os.remove(layout.store.os_path(paths.layer_link(REPO, digest)))
        result = process([Event("del", Kind.EVICT, REPO, digest)], other_worker, state)
        assert (result.dead, result.retry) == ([], [])

    return digest, delete


def _gone(cache_redis: redis.Redis, digest: str) -> None:
    assert not cache_redis.sismember(f"repository::{REPO}::blobs", digest)
    assert not cache_redis.exists(f"repository::{REPO}::blobs::{digest}")


@pytest.mark.parametrize("where", ["after-read", "after-write"])
@pytest.mark.parametrize("kind", [Kind.WARM_BLOB, Kind.WARM_MANIFEST])
def test_a_delete_handled_in_the_middle_of_a_push_wins(
    where: str, kind: Kind, layout: LayoutWriter, cache_redis: redis.Redis, state: StateStore
) -> None:
    digest, delete = _setup(layout, cache_redis, state)
    push = Event("push", Kind.WARM_BLOB, REPO, digest)
    if kind is Kind.WARM_MANIFEST:  # the blob is a layer of a manifest pushed now
        manifest, _ = layout.image(REPO, "v1", b"other layer")
        text = Path(layout.store.os_path(paths.blob_data(manifest))).read_bytes()
        text = text.replace(b'"layers": [', b'"layers": [{"digest": "%s"}, ' % digest.encode())
        manifest = layout.blob(text)
        layout.revision(REPO, manifest)
        push = Event("push", Kind.WARM_MANIFEST, REPO, manifest)
    store: Any = layout.store
    cache = BlobDescriptorCache(cache_redis)
    if where == "after-read":
        store = _HookedStore(layout.store, delete)
    else:
        cache = _HookedCache(cache_redis, delete)
    process([push], CachedBlobService(cache, store), state)
    _gone(cache_redis, digest)


def test_a_delete_before_or_after_a_push_wins(
    layout: LayoutWriter, cache_redis: redis.Redis, state: StateStore
) -> None:
    digest, delete = _setup(layout, cache_redis, state)
    worker = CachedBlobService(BlobDescriptorCache(cache_redis), layout.store)
    process([Event("push", Kind.WARM_BLOB, REPO, digest)], worker, state)
    assert cache_redis.sismember(f"repository::{REPO}::blobs", digest)  # pushed, then:
    delete()
    _gone(cache_redis, digest)
    # The push handled late, after the delete (a redelivery): the delete still wins.
    result = process([Event("push", Kind.WARM_BLOB, REPO, digest)], worker, state)
    assert len(result.dead) == 1
    _gone(cache_redis, digest)


class _FlakyAfterRead:
    """The store of a batch pushing to two repositories: the other worker's delete of B's
    blob runs once B's link was read, and A's check meets a passing storage error once."""

    def __init__(self, store: FilesystemStore, delete: Callable[[], None], flaky: str) -> None:
        self._store, self._delete, self._flaky = store, delete, flaky
        self._deleted = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def fetch_many(
        self, repository: str, digests: Sequence[str], sizes: Any = None, *, manifests: bool = False
    ) -> Any:
        found = self._store.fetch_many(repository, digests, sizes, manifests=manifests)
        if repository == "team/b" and not self._deleted:
            self._deleted = True
            self._delete()  # B's link was read; its membership is not written yet
        return found

    def stat(self, digest: str) -> Any:
        if digest == self._flaky:
            self._flaky = ""
            raise StoreUnavailableError("storage timed out")  # once
        return self._store.stat(digest)


def test_a_failed_check_of_one_repository_does_not_skip_the_others(
    layout: LayoutWriter, cache_redis: redis.Redis, state: StateStore
) -> None:
    layout.store.root.mkdir(parents=True, exist_ok=True)
    unlinked = layout.blob(b"pushed to A, which has no link to it")  # A's check stats it
    b_digest = layout.blob(b"B's layer, deleted meanwhile")
    layout.link("team/b", b_digest)
    layout.link("team/a", layout.blob(b"A exists"))
    other_worker = CachedBlobService(BlobDescriptorCache(cache_redis), layout.store)

    def delete_b() -> None:
        os.remove(layout.store.os_path(paths.layer_link("team/b", b_digest)))
        result = process([Event("del", Kind.EVICT, "team/b", b_digest)], other_worker, state)
        assert (result.dead, result.retry) == ([], [])

    store = _FlakyAfterRead(layout.store, delete_b, unlinked)
    service = CachedBlobService(BlobDescriptorCache(cache_redis), store)
    pushes = [
        Event("pa", Kind.WARM_BLOB, "team/a", unlinked),
        Event("pb", Kind.WARM_BLOB, "team/b", b_digest),
    ]
    result = process(pushes, service, state)
    assert not cache_redis.sismember("repository::team/b::blobs", b_digest)  # the delete won
    assert result.figures.fetch.requests == 2  # each push counted once, not again on the retry
