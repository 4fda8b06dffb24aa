"""Reconcile on a synthetic store: what is gone is evicted, what is live is left alone."""

from __future__ import annotations

import os

import pytest
import redis

from bench.layout import LayoutWriter
from tests.support.redisdump import dump
from worker.cache import BlobDescriptorCache
from worker.core.blobservice import CachedBlobService
from worker.core.reconcile import reconcile
from worker.core.rewarm import rewarm
from worker.storage import paths


@pytest.fixture
def warmed(service: CachedBlobService, layout: LayoutWriter) -> dict[str, str]:
    manifest, blobs = layout.image("team/app", "v1", b"kept", b"unlinked", b"collected")
    layout.image("other", "v1", b"kept")  # shares the "kept" layer
    rewarm(service)
    return {
        "manifest": manifest,
        "config": blobs[0],
        "kept": blobs[1],
        "unlinked": blobs[2],
        "collected": blobs[3],
    }


def test_reconcile_evicts_unlinked_and_collected_blobs_only(
    service: CachedBlobService,
    layout: LayoutWriter,
    cache_redis: redis.Redis,
    warmed: dict[str, str],
) -> None:
    os.remove(
        layout.store.os_path(paths.layer_link("team/app", warmed["unlinked"]))
    )  # a blob delete
    os.remove(layout.store.os_path(paths.blob_data(warmed["collected"])))  # garbage-collect
    before = dump(cache_redis)
    summary = reconcile(service.cache, service.store)
    after = dump(cache_redis)
    members = set(after["repository::team/app::blobs"])
    assert members == {warmed["manifest"], warmed["config"], warmed["kept"]}
    assert f"repository::team/app::blobs::{warmed['collected']}" not in after
    assert f"blobs::{warmed['collected']}" not in after  # its data is gone everywhere
    assert f"blobs::{warmed['unlinked']}" in after  # only unlinked here: the data stays
    assert after["repository::other::blobs"] == before["repository::other::blobs"]
    assert (summary.evicted_members, summary.evicted_descriptors) == (2, 1)
    assert (summary.repositories, summary.skipped) == (2, 0)


def test_dry_run_reports_and_changes_nothing(
    service: CachedBlobService,
    layout: LayoutWriter,
    cache_redis: redis.Redis,
    warmed: dict[str, str],
) -> None:
    os.remove(layout.store.os_path(paths.blob_data(warmed["collected"])))
    before = dump(cache_redis)
    summary = reconcile(service.cache, service.store, dry_run=True)
    assert (summary.evicted_members, summary.evicted_descriptors) == (1, 1)
    assert summary.dry_run
    assert dump(cache_redis) == before


def test_a_live_cache_is_left_alone(
    service: CachedBlobService, cache_redis: redis.Redis, warmed: dict[str, str]
) -> None:
    before = dump(cache_redis)
    summary = reconcile(service.cache, service.store)
    assert dump(cache_redis) == before
    assert (summary.evicted_members, summary.evicted_descriptors) == (0, 0)
    # team/app: manifest, config, 3 layers; other: manifest, config, layer (3.x: manifests too)
    assert summary.members == 8


def test_entries_no_registry_would_write_are_skipped_not_judged(
    service: CachedBlobService, cache_redis: redis.Redis, warmed: dict[str, str]
) -> None:
    cache_redis.sadd("repository::team/app::blobs", "not-a-digest")
    cache_redis.sadd("repository::Not Valid::blobs", warmed["kept"])
    summary = reconcile(service.cache, service.store)
    assert summary.skipped == 2
    assert cache_redis.sismember("repository::team/app::blobs", "not-a-digest")
    assert cache_redis.exists("repository::Not Valid::blobs")


def test_batches_change_round_trips_not_results(
    cache_redis: redis.Redis, layout: LayoutWriter, warmed: dict[str, str]
) -> None:
    os.remove(layout.store.os_path(paths.blob_data(warmed["collected"])))
    service = CachedBlobService(BlobDescriptorCache(cache_redis), layout.store)
    summary = reconcile(service.cache, service.store, batch=1)
    assert (summary.evicted_members, summary.evicted_descriptors) == (1, 1)


def test_an_entry_the_store_cannot_answer_for_is_left_and_counted(
    service: CachedBlobService, layout: LayoutWriter, warmed: dict[str, str]
) -> None:
    # The blob's folder is a file now: its stat fails with ENOTDIR, not "not there".
    data = layout.store.os_path(paths.blob_data(warmed["kept"]))
    folder = os.path.dirname(data)
    os.remove(data)
    os.rmdir(folder)
    with open(folder, "w") as f:
        f.write("not a folder")
    summary = reconcile(service.cache, service.store)
    # One member in each of two repositories and the global descriptor: left, counted.
    assert summary.errors == 3
    assert (summary.evicted_members, summary.evicted_descriptors) == (0, 0)
    assert service.cache.contains("team/app", warmed["kept"])
    assert service.cache.contains("other", warmed["kept"])
