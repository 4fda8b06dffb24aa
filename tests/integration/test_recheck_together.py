"""A re-warm on S3 (moto) re-checks its writes together: the repositories its walk read in one
folder listing by one listing of that folder made again after their writes, a repository
listed on its own by one merge for all its batches; a delete between a write and its held
re-check still wins, the write's note stays open until then, and a run that fails re-checks
what it wrote all the same."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest
import redis

from bench.layout import LayoutWriter
from bench.s3_endpoint import ACCESS_KEY, REGION, SECRET_KEY, client, put_tree
from tests.support.interleave import FaultyCache, HookedStore, Storage, lost_reply
from tests.support.redisdump import dump
from worker.cache import BlobDescriptorCache
from worker.core import writes
from worker.core.blobservice import CachedBlobService
from worker.core.rewarm import rewarm
from worker.errors import CacheError
from worker.registry.versions import RegistryVersion
from worker.state import StateStore
from worker.storage import paths
from worker.storage.s3 import S3Store

ROOT = "srv/registry"
KEYS = f"{ROOT}/docker/registry/v2"
_buckets = itertools.count()


def _bucket(endpoint: str, layout: LayoutWriter) -> S3Store:
    name = f"recheck-{next(_buckets)}"
    s3 = client(endpoint)
    s3.create_bucket(Bucket=name)
    put_tree(s3, name, f"{ROOT}/", layout.store.root)
    return S3Store(
        name,
        ROOT,
        region=REGION,
        endpoint=endpoint,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
    )


def _listings(store: S3Store) -> Counter[str]:
    """Every list request's prefix from now on, counted."""
    seen: Counter[str] = Counter()

    def note(params: dict[str, Any], **_: Any) -> None:
        seen[params.get("Prefix", "")] += 1

    store._client.meta.events.register("provide-client-params.s3.ListObjectsV2", note)
    return seen


def _small_repositories(layout: LayoutWriter) -> dict[str, list[str]]:
    linked: dict[str, list[str]] = {}
    for n in range(6):
        name = f"team/app{n}"
        linked[name] = [layout.blob(f"{name} {i}".encode()) for i in range(3)]
        for d in linked[name]:
            layout.link(name, d)
    layout.image("team/app0", "v1", b"a layer of an image")
    return linked


@pytest.mark.parametrize("version", [RegistryVersion.V3, RegistryVersion.V2])
def test_one_listing_again_rechecks_every_repository_the_walk_listed_together(
    version: RegistryVersion, layout: LayoutWriter, s3_endpoint: str, cache_redis: redis.Redis
) -> None:
    _small_repositories(layout)
    expected = rewarm(CachedBlobService(BlobDescriptorCache(cache_redis, version), layout.store))
    filled = dump(cache_redis)
    cache_redis.flushdb()
    store = _bucket(s3_endpoint, layout)
    listed = _listings(store)
    service = CachedBlobService(BlobDescriptorCache(cache_redis, version), store)
    cold = rewarm(service)
    assert dump(cache_redis) == filled
    assert (cold.blobs, cold.manifests, cold.errors) == (
        expected.blobs,
        expected.manifests,
        0,
    )
    # The whole store fits in a page: the walk's one listing, then one made after every write.
    assert listed[f"{KEYS}/repositories/"] == 2, listed
    assert not [p for p in listed if "/_layers/" in p or "/_manifests/" in p], listed
    # The data: once for the walk's sizes; on 2.x once more, afresh, for all of them together.
    assert listed[f"{KEYS}/blobs/sha256/"] == (1 if version is RegistryVersion.V3 else 2)
    listed.clear()
    warm = rewarm(service)
    assert (warm.hits, warm.misses) == (cold.blobs + cold.manifests, 0)
    assert listed == Counter({f"{KEYS}/repositories/": 1}), "a hit writes and re-checks nothing"


def test_a_repository_listed_on_its_own_is_rechecked_once_for_all_its_batches(
    layout: LayoutWriter, s3_endpoint: str, cache_redis: redis.Redis
) -> None:
    linked = _small_repositories(layout)
    store = _bucket(s3_endpoint, layout)
    listed = _listings(store)
    service = CachedBlobService(BlobDescriptorCache(cache_redis), store)
    summary = rewarm(service, ["team/app0"], batch_size=1)  # a name given: no walk
    assert (summary.blobs, summary.manifests, summary.errors) == (
        len(linked["team/app0"]) + 2,
        1,
        0,
    )
    # Its link folder: listed by the run, then once more for its four batches' re-checks.
    assert listed[f"{KEYS}/repositories/team/app0/_layers/"] == 2, listed
    assert cache_redis.scard("repository::team/app0::blobs") == summary.blobs + summary.manifests


def test_held_rechecks_are_done_when_too_many_wait(
    layout: LayoutWriter, s3_endpoint: str, cache_redis: redis.Redis, monkeypatch: Any
) -> None:
    _small_repositories(layout)
    store = _bucket(s3_endpoint, layout)
    listed = _listings(store)
    monkeypatch.setattr(writes, "HOLD_WRITES", 4)
    rewarm(CachedBlobService(BlobDescriptorCache(cache_redis), store), batch_size=2)
    # 6 repositories of 3 blob links (2 batches each) and one manifest: 13 writes, settled
    # after the 4th, 8th and 12th, then at the end; each time the folder is listed again.
    assert listed[f"{KEYS}/repositories/"] == 1 + 4, listed


class _Race:
    """A re-warm whose delete of team/app0's first blob link comes between app0's read and its
    write (the first read); at the next read (app0's write made, its re-check held) it notes
    what the journal holds, and arms ``fault`` for the next write."""

    def __init__(self, store: S3Store, cache_redis: redis.Redis, digest: str) -> None:
        self.hooked = HookedStore(store)
        self.faulty = FaultyCache(cache_redis)
        self.notes: list[tuple[str, bool, list[str]]] = []
        self.fault: BaseException | None = None
        self.state: StateStore | None = None

        def deleted() -> None:
            Storage(store).remove(paths.layer_link("team/app0", digest))
            BlobDescriptorCache(cache_redis).clear(digest, "team/app0")  # the registry's own
            self.hooked.arm(1, next_read)

        def next_read() -> None:
            assert self.state is not None
            self.notes = [note for _, note in self.state.unchecked.older_than(0)]
            self.faulty.fault = self.fault

        self.hooked.arm(1, deleted)

    def service(self, state: StateStore) -> CachedBlobService:
        self.state = state
        return CachedBlobService(self.faulty, self.hooked, journal=state.unchecked)


def test_a_delete_between_a_write_and_its_held_recheck_wins(
    layout: LayoutWriter, s3_endpoint: str, cache_redis: redis.Redis, state: StateStore
) -> None:
    linked = _small_repositories(layout)
    digest = linked["team/app0"][0]
    store = _bucket(s3_endpoint, layout)
    race = _Race(store, cache_redis, digest)
    summary = rewarm(race.service(state))
    # At the next read app0's write (of the deleted blob too) was made, and its note open.
    assert any(r == "team/app0" and digest in d for r, _, d in race.notes), race.notes
    assert not cache_redis.sismember("repository::team/app0::blobs", digest)
    assert not cache_redis.exists(f"repository::team/app0::blobs::{digest}")
    assert summary.errors == 1  # counted as its batch would have counted it
    assert state.unchecked.older_than(0) == []  # every write re-checked, every note closed


def test_a_run_that_fails_rechecks_what_it_wrote_all_the_same(
    layout: LayoutWriter, s3_endpoint: str, cache_redis: redis.Redis, state: StateStore
) -> None:
    linked = _small_repositories(layout)
    digest = linked["team/app0"][0]
    store = _bucket(s3_endpoint, layout)
    race = _Race(store, cache_redis, digest)
    race.fault = lost_reply()  # the next write is made, its reply lost: the run fails
    with pytest.raises(CacheError):
        rewarm(race.service(state))
    assert not cache_redis.sismember("repository::team/app0::blobs", digest)
    assert state.unchecked.older_than(0) == []  # both writes re-checked all the same


class _ByNamespace:
    """A store on disk that says its walk listed each namespace in one go (as S3 lists a
    folder read whole), and re-checks as ``fetch_cached`` does, noting each call's ranges."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.calls: list[list[str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def recheck_scope(self, repository: str) -> str:
        return repository.partition("/")[0]

    def fetch_rechecked(self, checks: Any, *, seen: Any) -> list[Any]:
        self.calls.append([str(scope) for _, _, _, scope in checks])
        return [self._store.fetch_cached(r, d, manifests=m, seen=seen) for r, d, m, _ in checks]


@pytest.mark.parametrize(("hold", "settles"), [(100, 1), (4, 3)])
def test_held_rechecks_wait_for_the_walk_to_leave_a_range_never_split_it(
    hold: int,
    settles: int,
    layout: LayoutWriter,
    cache_redis: redis.Redis,
    monkeypatch: Any,
) -> None:
    for ns in ("a", "b", "c"):
        for n in range(3):
            for i in range(2):
                layout.link(f"{ns}/app{n}", layout.blob(f"{ns} {n} {i}".encode()))
    monkeypatch.setattr(writes, "HOLD_WRITES", hold)
    store = _ByNamespace(layout.store)
    summary = rewarm(CachedBlobService(BlobDescriptorCache(cache_redis), store))
    assert (summary.blobs, summary.errors) == (18, 0)
    assert cache_redis.scard("repository::b/app1::blobs") == 2
    # Few held: all at the end. Half the bound held (2 of 4 writes): at each range's end,
    # each range whole in one re-check.
    assert len(store.calls) == settles, store.calls
    scopes = [sorted(set(c)) for c in store.calls]
    assert sorted(s for c in scopes for s in c) == ["a", "b", "c"], store.calls
