"""The cache heals itself: emptied or restarted while the warmer runs, it is re-warmed within
the check interval, one re-warm at a time across machines, behind a lock that expires."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from bench.layout import LayoutWriter
from tests.support.redis_servers import redis_cluster
from tests.support.redisdbs import DB, shared_env
from tests.support.registry import free_port
from tests.support.services import warmer_process
from worker.cache import BlobDescriptorCache
from worker.cli.processes import wait_until
from worker.config.connections import connect
from worker.core.heal import REWARM_LOCK, cache_emptied, needs_rewarm, note_cache_size
from worker.state import StateStore


def test_an_emptied_cache_is_told_from_an_empty_store_and_from_a_growing_one(
    cache_redis: redis.Redis, state: StateStore
) -> None:
    cache = BlobDescriptorCache(cache_redis)
    assert cache_emptied(cache, state)  # the first look at an empty cache: new or flushed
    for i in range(10):
        cache_redis.sadd(f"repository::r{i}::blobs", "x")
    assert not cache_emptied(cache, state)
    cache_redis.flushdb()
    assert cache_emptied(cache, state)  # emptied
    assert cache_emptied(cache, state)  # still pending: no re-warm has confirmed the drop
    note_cache_size(cache, state)  # a re-warm ran to its end and left an empty cache
    assert not cache_emptied(cache, state)  # still empty: the store may be empty, no loop
    for i in range(10):
        cache_redis.sadd(f"repository::r{i}::blobs", "x")
    assert not cache_emptied(cache, state)
    cache_redis.delete(*(f"repository::r{i}::blobs" for i in range(7)))
    assert cache_emptied(cache, state)  # a Harbor GC, and the registry refilled a little


def test_a_drop_whose_rewarm_died_is_seen_again_until_a_rewarm_confirms_it(
    cache_redis: redis.Redis, state: StateStore
) -> None:
    cache = BlobDescriptorCache(cache_redis)
    for i in range(10):
        cache_redis.sadd(f"repository::r{i}::blobs", "x")
    assert not cache_emptied(cache, state)
    cache_redis.flushdb()
    assert needs_rewarm(cache, state)
    # The re-warm took the lock and died: while the lock lives, nobody looks.
    assert state.acquire_lock(REWARM_LOCK, "dead worker", 0.2)
    assert not needs_rewarm(cache, state)
    wait_until(lambda: state.lock_holder(REWARM_LOCK) is None, timeout=5, what="the lock to expire")
    cache_redis.sadd("repository::r0::blobs", "x")  # a pull refilled a little meanwhile
    assert needs_rewarm(cache, state)  # the drop is still pending
    note_cache_size(cache, state)  # a re-warm ran to its end
    assert not needs_rewarm(cache, state)


def test_a_cluster_counts_the_keys_of_every_primary(tmp_path: Path) -> None:
    with redis_cluster(tmp_path / "cluster") as ports:
        addrs = ",".join(f"127.0.0.1:{port}" for port in ports)
        client = connect(f"redis://{addrs}", timeout=5)
        for i in range(60):  # spread over the three primaries' slots
            client.sadd(f"repository::r{i}::blobs", "x")
        assert BlobDescriptorCache(client).key_count() == 60


def test_the_lock_is_one_holders_and_expires_when_it_stops_refreshing(state: StateStore) -> None:
    assert state.acquire_lock("job", "a", 0.3)
    assert not state.acquire_lock("job", "b", 0.3)
    assert not state.refresh_lock("job", "b", 10)
    assert not state.release_lock("job", "b")
    assert state.refresh_lock("job", "a", 0.3)
    wait_until(lambda: state.lock_holder("job") is None, timeout=5, what="the lock to expire")
    assert state.acquire_lock("job", "b", 10)
    assert state.release_lock("job", "b")
    assert state.lock_holder("job") is None


def test_a_flushed_cache_is_rewarmed_and_a_dead_holders_lock_only_delays_it(
    redis_proc: Any,
    layout: LayoutWriter,
    cache_redis: redis.Redis,
    state_redis: redis.Redis,
    tmp_path: Path,
) -> None:
    _, blobs = layout.image("team/app", "v1", b"a", b"b")
    broker = redis.Redis(host=redis_proc.host, port=redis_proc.port, db=DB.HEAL_BROKER)
    broker.flushdb()
    env = {
        **shared_env(redis_proc, broker=DB.HEAL_BROKER),
        "WARMER_STORAGE_ROOT": str(layout.store.root),
        "WARMER_CACHE_CHECK_INTERVAL": "1",
        "WARMER_REWARM_SCHEDULE": "3600",
    }
    state = StateStore(state_redis)

    def warm() -> bool:
        return all(cache_redis.sismember("repository::team/app::blobs", b) for b in blobs)

    worker = ["worker", "--pool", "solo", "--without-mingle", "--without-gossip"]
    beat = ["beat", "--schedule", str(tmp_path / "schedule")]
    with (
        warmer_process(worker, env, tmp_path / "worker.log"),
        warmer_process(beat, env, tmp_path / "beat.log"),
    ):
        wait_until(warm, timeout=60, what="the first re-warm")
        wait_until(lambda: state.lock_holder(REWARM_LOCK) is None, timeout=30, what="it to end")
        cache_redis.flushdb()  # a cache Redis restarted without persistence
        wait_until(warm, timeout=60, what="a re-warm after the flush")

        # A re-warm on another machine whose holder died: its lock still holds for 4 s.
        wait_until(lambda: state.lock_holder(REWARM_LOCK) is None, timeout=30, what="it to end")
        state_redis.set("warmer:lock:rewarm", "dead-holder", px=4000)
        cache_redis.flushdb()
        while state.lock_holder(REWARM_LOCK) == "dead-holder":
            assert not warm()  # no second re-warm while the lock holds
            time.sleep(0.1)
        wait_until(warm, timeout=60, what="the re-warm once the dead holder's lock expired")
    last = state.last("rewarm")
    assert last is not None
    assert last["blobs"] == 3
    broker.flushdb()


def test_a_restarted_cache_redis_is_rewarmed(
    redis_proc: Any, layout: LayoutWriter, state_redis: redis.Redis, tmp_path: Path
) -> None:
    _, blobs = layout.image("team/app", "v1", b"a", b"b")
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no"]  # as most registries run their cache: nothing on disk
    cache_server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    cache = redis.Redis(port=port)
    broker = redis.Redis(host=redis_proc.host, port=redis_proc.port, db=DB.HEAL_RESTART_BROKER)
    broker.flushdb()
    env = {
        **shared_env(redis_proc, broker=DB.HEAL_RESTART_BROKER),
        "WARMER_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "WARMER_STORAGE_ROOT": str(layout.store.root),
        "WARMER_CACHE_CHECK_INTERVAL": "1",
        "WARMER_REWARM_SCHEDULE": "3600",
    }

    def warm() -> bool:
        try:
            return all(cache.sismember("repository::team/app::blobs", b) for b in blobs)
        except redis.ConnectionError:
            return False

    worker = ["worker", "--pool", "solo", "--without-mingle", "--without-gossip"]
    beat = ["beat", "--schedule", str(tmp_path / "schedule")]
    try:
        with (
            warmer_process(worker, env, tmp_path / "worker.log"),
            warmer_process(beat, env, tmp_path / "beat.log"),
        ):
            wait_until(warm, timeout=60, what="the first re-warm")
            wait_until(
                lambda: state_redis.get("warmer:cache:keys") not in (None, b"0"),
                timeout=30,
                what="the cache's key count",
            )
            cache_server.kill()
            cache_server.wait()
            cache_server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
            wait_until(warm, timeout=60, what="a re-warm after the cache Redis restarted")
    finally:
        cache.close()
        cache_server.kill()
        cache_server.wait()
        broker.flushdb()
