"""End to end: Harbor's garbage-collect ends by deleting every ``blobs::*`` and
``repository::*`` key of its registry's cache. The warmer's heal notices the drop and re-warms:
what survived is warm again (a first pull misses nothing), and nothing the garbage-collect
deleted is written back (the registry answers 404 for it, not from the cache)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.oci import Image, layer, write_layout
from tests.support.redisdbs import DB, shared_env
from tests.support.registry import delete, garbage_collect, head_blob, running_registry
from tests.support.services import warmer_process
from worker.cli.demo.registry import RegistryBinary
from worker.cli.processes import wait_until
from worker.state import StateStore

pytestmark = pytest.mark.e2e


def _flush_like_harbor_gc(cache: redis.Redis) -> int:
    keys = [*cache.scan_iter("blobs::*"), *cache.scan_iter("repository::*")]
    return int(cache.delete(*keys)) if keys else 0


def test_after_gc_and_a_flush_the_heal_warms_what_survived_and_nothing_gc_deleted(
    redis_proc: Any, tmp_path: Path, binary: RegistryBinary
) -> None:
    dbs = {"cache": DB.HEAL_GC_CACHE, "broker": DB.HEAL_GC_BROKER, "state": DB.HEAL_GC_STATE}
    clients = {
        k: redis.Redis(host=redis_proc.host, port=redis_proc.port, db=v) for k, v in dbs.items()
    }
    for client in clients.values():
        client.flushdb()
    cache, state = clients["cache"], StateStore(clients["state"])
    url = f"redis://{redis_proc.host}:{redis_proc.port}/{DB.HEAL_GC_CACHE}"
    root = tmp_path / "storage"
    doomed_layer = layer("doomed.txt", b"only in the deleted image")
    doomed = Image([layer("shared.txt", b"shared"), doomed_layer], label="doomed")
    kept = Image([layer("shared.txt", b"shared"), layer("kept.txt", b"kept")], label="kept")
    with running_registry(tmp_path / "r1", root=root, redis_url=url, binary=binary) as reg:
        reg.push(write_layout(tmp_path / "l1", doomed), "team/app:v1")
        reg.push(write_layout(tmp_path / "l2", kept), "keep/app:v1")
        reg.pull("team/app:v1", tmp_path / "p1")
        reg.pull("keep/app:v1", tmp_path / "p2")
        assert delete(reg, f"team/app/manifests/{doomed.manifest.digest}") == 202
        reg.process.terminate()
        reg.process.wait(10)
        garbage_collect(reg)
    env = {
        **shared_env(redis_proc, **dbs),
        "WARMER_STORAGE_ROOT": str(root),
        "WARMER_REGISTRY_VERSION": binary.version.value,
        "WARMER_CACHE_CHECK_INTERVAL": "1",
        "WARMER_REWARM_SCHEDULE": "3600",
    }
    worker = ["worker", "--pool", "solo", "--without-mingle", "--without-gossip"]
    beat = ["beat", "--schedule", str(tmp_path / "schedule")]
    with (
        running_registry(tmp_path / "r2", root=root, redis_url=url, binary=binary) as reg,
        warmer_process(worker, env, tmp_path / "worker.log"),
        warmer_process(beat, env, tmp_path / "beat.log"),
    ):
        # Beat's first look counts what the cache holds; then Harbor's GC empties it.
        wait_until(state.cache_keys, timeout=60, what="beat's first look")
        assert _flush_like_harbor_gc(cache) > 0
        summary = wait_until(lambda: state.last("rewarm"), timeout=120, what="the heal")
        assert summary["repositories"] == 2
        assert not cache.exists(f"blobs::{doomed_layer.digest}")
        assert not cache.sismember("repository::team/app::blobs", doomed_layer.digest)
        assert head_blob(reg, "team/app", doomed_layer.digest) == 404
        before = reg.cache_counts()
        reg.pull("keep/app:v1", tmp_path / "p3")
        after = reg.cache_counts()
    assert after["Miss"] - before["Miss"] == 0, (before, after)
    assert after["Hit"] > before["Hit"]
    for client in clients.values():
        client.flushdb()
