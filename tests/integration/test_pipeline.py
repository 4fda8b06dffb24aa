"""Batches of events applied to the cache: plain functions, real Redis, a synthetic store."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis

from bench.layout import LayoutWriter
from tasks.events import apply_events
from tests.support.redisdbs import DB
from tests.support.redisdump import CountingConnection, dump
from tests.support.registry import free_port
from worker.cache import BlobDescriptorCache
from worker.config.settings import load_settings
from worker.core.blobservice import CachedBlobService
from worker.core.clients import build_cache
from worker.core.pipeline import process
from worker.core.rewarm import rewarm
from worker.registry.events import Event, Kind
from worker.state import StateStore
from worker.state.figures import Figures
from worker.storage import paths

ABSENT = "sha256:" + "0" * 64


class Counting(CountingConnection):
    """Round trips of this module's tests alone."""

    sent = 0


def _e(kind: Kind, repository: str, digest: str | None = None, n: int = 0) -> Event:
    return Event(f"ev-{kind.value}-{n}-{digest and digest[-6:]}", kind, repository, digest)


def test_blob_pushes_warm_each_blob_in_its_repository(
    service: CachedBlobService, layout: LayoutWriter, state: StateStore, cache_redis: redis.Redis
) -> None:
    a, b = layout.blob(b"a"), layout.blob(b"b")
    layout.link("team/app", a)
    layout.link("team/app", b)
    layout.link("other", a)
    events = [
        _e(Kind.WARM_BLOB, "team/app", a),
        _e(Kind.WARM_BLOB, "team/app", b),
        _e(Kind.WARM_BLOB, "other", a),
    ]
    result = process(events, service, state)
    assert (result.figures.warmed, result.retry, result.dead) == (3, [], [])
    assert result.as_dict()["fetch"] == {"requests": 3, "hits": 0, "misses": 3}
    assert set(dump(cache_redis)["repository::team/app::blobs"]) == {a, b}


def test_a_manifest_push_leaves_what_a_full_rewarm_of_that_repository_leaves(
    service: CachedBlobService, layout: LayoutWriter, state: StateStore, cache_redis: redis.Redis
) -> None:
    manifest, _blobs = layout.image("team/app", "v1", b"l1", b"l2")
    result = process([_e(Kind.WARM_MANIFEST, "team/app", manifest)], service, state)
    assert (result.figures.warmed, result.retry, result.dead) == (4, [], [])
    warmed = dump(cache_redis)
    cache_redis.flushdb()
    rewarm(service)
    assert warmed == dump(cache_redis)


def test_an_index_push_warms_every_child_and_its_blobs(
    service: CachedBlobService, layout: LayoutWriter, state: StateStore, cache_redis: redis.Redis
) -> None:
    child1, _ = layout.image("multi", "amd", b"x-amd")
    child2, _ = layout.image("multi", "arm", b"x-arm")
    index = layout.blob(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [{"digest": child1}, {"digest": child2}],
            }
        ).encode()
    )
    layout.revision("multi", index)
    result = process([_e(Kind.WARM_MANIFEST, "multi", index)], service, state)
    assert (result.retry, result.dead) == ([], [])
    warmed = dump(cache_redis)
    cache_redis.flushdb()
    rewarm(service)
    assert warmed == dump(cache_redis)


def test_a_windows_style_manifest_warms_all_but_the_layers_the_registry_does_not_hold(
    service: CachedBlobService, layout: LayoutWriter, state: StateStore, cache_redis: redis.Redis
) -> None:
    # Foreign base layers (only urls), one of them pushed after all, and one ordinary layer;
    # then an index naming it and a second image: every manifest and child is warmed.
    config, layer, pushed = layout.blob(b"{}"), layout.blob(b"ours"), layout.blob(b"pushed")
    absent = "sha256:" + "f" * 64
    for d in (config, layer, pushed):
        layout.link("win/app", d)
    foreign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    image = layout.blob(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"digest": config, "size": 2, "mediaType": "x"},
                "layers": [
                    {"digest": absent, "size": 9, "mediaType": foreign, "urls": ["https://x/a"]},
                    {"digest": pushed, "size": 6, "mediaType": foreign, "urls": ["https://x/p"]},
                    {"digest": layer, "size": 4, "mediaType": "x"},
                ],
            }
        ).encode()
    )
    other, _ = layout.image("win/app", "other", b"other")
    index = layout.blob(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
                "manifests": [{"digest": image}, {"digest": other}],
            }
        ).encode()
    )
    layout.revision("win/app", image)
    layout.revision("win/app", index)
    result = process([_e(Kind.WARM_MANIFEST, "win/app", index)], service, state)
    assert (result.retry, result.dead) == ([], [])
    warmed = dump(cache_redis)
    assert set(warmed["repository::win/app::blobs"]) >= {config, layer, pushed}
    assert absent not in warmed["repository::win/app::blobs"]
    assert {f"blobs::{d}" for d in (index, image, other)} <= set(warmed)
    cache_redis.flushdb()
    rewarm(service)
    assert warmed == dump(cache_redis)


def test_a_missing_ordinary_layer_is_dead_lettered_not_skipped(
    service: CachedBlobService, layout: LayoutWriter, state: StateStore
) -> None:
    config = layout.blob(b"{}")
    layout.link("app", config)
    absent = "sha256:" + "e" * 64
    image = layout.blob(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"digest": config, "size": 2, "mediaType": "x"},
                "layers": [{"digest": absent, "size": 1, "mediaType": "x"}],
            }
        ).encode()
    )
    layout.revision("app", image)
    result = process([_e(Kind.WARM_MANIFEST, "app", image)], service, state)
    # Only foreign layers may be absent; an ordinary one is not found: no retry makes it appear
    # (the registry holds every layer of a manifest it accepts), so it is dead-lettered at once.
    assert result.retry == []
    assert [reason for _, reason in result.dead] == [f"blob {absent} is not linked into app"]


def test_a_manifest_not_readable_yet_is_waited_for_then_retried(
    service: CachedBlobService, state: StateStore
) -> None:
    naps: list[float] = []
    result = process(
        [_e(Kind.WARM_MANIFEST, "team/app", ABSENT)],
        service,
        state,
        manifest_wait=0.3,
        sleep=naps.append,
    )
    assert len(result.retry) == 1
    assert "not a revision" in result.retry[0][1]
    assert naps  # it polled before giving up


def test_an_unparseable_manifest_is_dead_not_retried(
    service: CachedBlobService, layout: LayoutWriter, state: StateStore
) -> None:
    bad = layout.blob(b"{not json")
    layout.revision("team/app", bad)
    result = process([_e(Kind.WARM_MANIFEST, "team/app", bad)], service, state)
    assert (len(result.dead), result.retry) == (1, [])


def test_a_pushed_blob_missing_from_the_store_is_dead(
    service: CachedBlobService, state: StateStore
) -> None:
    result = process([_e(Kind.WARM_BLOB, "team/app", ABSENT)], service, state)
    assert (len(result.dead), result.figures.warmed) == (1, 0)


def test_delete_evicts_from_the_repository_and_globally_only_once_data_is_gone(
    service: CachedBlobService, layout: LayoutWriter, state: StateStore, cache_redis: redis.Redis
) -> None:
    shared = layout.blob(b"shared")
    for repo in ("team/app", "other"):
        layout.link(repo, shared)
    rewarm(service)
    process([_e(Kind.EVICT, "team/app", shared)], service, state)
    keys = dump(cache_redis)
    assert shared not in keys.get("repository::team/app::blobs", [])
    assert f"blobs::{shared}" in keys  # still in the store, still used by "other"
    os.remove(layout.store.os_path(paths.blob_data(shared)))  # garbage-collected
    result = process([_e(Kind.EVICT, "other", shared, n=1)], service, state)
    assert result.figures.evicted == 1
    assert f"blobs::{shared}" not in dump(cache_redis)


def test_pulls_are_recorded_and_tag_deletes_ignored(
    service: CachedBlobService, state: StateStore, cache_redis: redis.Redis
) -> None:
    result = process(
        [_e(Kind.ACCESS, "team/app", ABSENT), _e(Kind.IGNORE, "team/app")], service, state
    )
    assert (result.accessed, result.ignored) == (1, 1)
    assert state.recently_pulled() == ["team/app"]
    assert dump(cache_redis) == {}


def test_a_cache_outage_sends_every_warm_to_retry(layout: LayoutWriter, state: StateStore) -> None:
    digest = layout.blob(b"x")
    layout.link("team/app", digest)
    manifest, _ = layout.image("team/app", "v1", b"y")
    settings = load_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout=0.5)
    service = CachedBlobService(build_cache(settings), layout.store)
    result = process(
        [
            _e(Kind.WARM_BLOB, "team/app", digest),
            _e(Kind.WARM_MANIFEST, "team/app", manifest),
            _e(Kind.EVICT, "team/app", digest),
        ],
        service,
        state,
    )
    assert len(result.retry) == 3
    assert all("cache Redis" in reason for _, reason in result.retry)


def test_processing_a_batch_twice_leaves_the_same_cache(
    layout: LayoutWriter, state: StateStore, cache_redis: redis.Redis
) -> None:
    manifest, _ = layout.image("team/app", "v1", b"a", b"b")
    events = [_e(Kind.WARM_MANIFEST, "team/app", manifest)]
    service = CachedBlobService(BlobDescriptorCache(cache_redis), layout.store)
    process(events, service, state)
    once = dump(cache_redis)
    process(events, service, state)
    assert dump(cache_redis) == once


def _pushes_to_many_repositories(layout: LayoutWriter, *, absent: bool) -> list[Event]:
    shared = layout.blob(b"shared")
    events = []
    for r in range(4):
        for i in range(3):
            digest = layout.blob(f"{r} {i}".encode())
            layout.link(f"team/app{r}", digest)
            events.append(_e(Kind.WARM_BLOB, f"team/app{r}", digest))
        layout.link(f"team/app{r}", shared)
        events.append(_e(Kind.WARM_BLOB, f"team/app{r}", shared, n=r))
    if absent:  # dead: not in the store
        events.append(_e(Kind.WARM_BLOB, "team/app1", ABSENT))
    return events


def test_a_batch_across_repositories_leaves_what_its_events_leave_one_by_one(
    layout: LayoutWriter, state: StateStore, redis_proc: Any, cache_redis: redis.Redis
) -> None:
    events = _pushes_to_many_repositories(layout, absent=True)
    cache = BlobDescriptorCache(cache_redis)
    figures = Figures()
    for event in events:
        figures.add(process([event], CachedBlobService(cache, layout.store), state).figures)
    one_by_one = dump(cache_redis)
    cache_redis.flushdb()
    result = process(events, CachedBlobService(cache, layout.store), state)
    assert dump(cache_redis) == one_by_one
    assert result.figures == figures
    assert [e for e, _ in result.dead] == events[-1:]
    assert {r: f.warmed for r, f in result.repositories.items()} == {
        f"team/app{r}": 4 for r in range(4)
    }


def test_a_batch_of_pushes_to_many_repositories_costs_three_round_trips(
    layout: LayoutWriter, redis_proc: Any, cache_redis: redis.Redis, state_redis: redis.Redis
) -> None:
    # One read and one write of the cache for every repository at once, then one release of
    # the batch from the ledger with its figures.
    events = _pushes_to_many_repositories(layout, absent=False)
    messages = [e.as_message() for e in events]
    clients = [
        redis.Redis(
            connection_pool=redis.ConnectionPool(
                host=redis_proc.host, port=redis_proc.port, db=db, connection_class=Counting
            )
        )
        for db in (DB.CACHE, DB.STATE)
    ]
    cache, state = BlobDescriptorCache(clients[0]), StateStore(clients[1])
    service = CachedBlobService(cache, layout.store)
    state.track(messages, time.time() + 60)
    apply_events(messages[:1], service, state, time.time())  # scripts loaded, connections open
    Counting.sent = 0
    result = apply_events(messages, service, state, time.time())
    assert Counting.sent == 3
    assert (result["warmed"], result["dead"]) == (16, 0)
    assert state.pending_count() == 0
    for client in clients:
        client.close()
