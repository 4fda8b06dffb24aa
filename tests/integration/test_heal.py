"""The cache heals itself: emptied or restarted while the warmer runs, it is re-warmed within
the check interval, one re-warm at a time across machines, behind a lock that expires; heal
re-warms that keep failing are retried less and less often, until one runs to its end."""

from __future__ import annotations

import itertools
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker

import tasks.jobs
from bench.layout import LayoutWriter
from tasks import worker_app
from tests.support.redis_servers import redis_cluster
from tests.support.redisdbs import DB, shared_env
from tests.support.registry import free_port
from tests.support.services import warmer_process
from worker.cache import BlobDescriptorCache
from worker.celeryapp.names import REWARM_TASK, WATCH_CACHE_TASK
from worker.cli.processes import wait_until
from worker.config.connections import connect
from worker.config.settings import load_settings
from worker.core.heal import (
    BACKOFF_CAP,
    REWARM_LOCK,
    cache_emptied,
    heal,
    needs_rewarm,
    note_cache_size,
)
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


def test_heal_rewarms_that_never_end_wait_twice_as_long_each_time_until_one_confirms(
    cache_redis: redis.Redis, state: StateStore
) -> None:
    cache = BlobDescriptorCache(cache_redis)
    for i in range(10):
        cache_redis.sadd(f"repository::r{i}::blobs", "x")
    assert not heal(cache, state, now=1000, interval=30).emptied
    cache_redis.flushdb()
    starts, now = [], 1000.0
    while now < 1000 + 6 * BACKOFF_CAP:  # every check for six hours: none of them confirms
        look = heal(cache, state, now=now, interval=30)
        assert look.emptied
        if look.rewarm:
            starts.append((now, look.unconfirmed))
        now += 10
    gaps = [round(b[0] - a[0]) for a, b in itertools.pairwise(starts)]
    assert gaps[:6] == [60, 120, 240, 480, 960, 1920]  # twice the check interval, doubling
    assert set(gaps[6:]) == {3600}  # then an hour, not more
    assert [n for _, n in starts[:3]] == [1, 2, 3]
    assert state.heal_rewarms.read().attempts == len(starts)
    note_cache_size(cache, state)  # a re-warm ran to its end: confirmed, the backoff forgotten
    assert state.heal_rewarms.read().attempts == 0
    for i in range(10):
        cache_redis.sadd(f"repository::r{i}::blobs", "x")
    assert not heal(cache, state, now=now, interval=30).emptied
    cache_redis.flushdb()
    assert heal(cache, state, now=now + 1, interval=30).rewarm  # a new drop: at once
    # A drop that goes away on its own (the cache refilled) forgets the backoff too.
    for i in range(10):
        cache_redis.sadd(f"repository::r{i}::blobs", "x")
    assert heal(cache, state, now=now + 2, interval=30) == (False, False, 0, 0.0)
    assert state.heal_rewarms.read().attempts == 0


def test_two_looks_at_once_start_one_heal_rewarm(
    cache_redis: redis.Redis, state: StateStore
) -> None:
    cache = BlobDescriptorCache(cache_redis)
    cache_redis.sadd("repository::r::blobs", "x")
    heal(cache, state, now=0, interval=30)
    cache_redis.flushdb()
    looks = [heal(cache, state, now=5, interval=30) for _ in range(3)]  # a backlog of watches
    assert [look.rewarm for look in looks] == [True, False, False]
    assert state.heal_rewarms.read().attempts == 1


@pytest.fixture
def heal_app(
    redis_proc: Any, layout: LayoutWriter, cache_redis: redis.Redis, state_redis: redis.Redis
) -> Any:
    shared = shared_env(redis_proc, broker=DB.HEAL_BROKER)
    settings = load_settings(
        redis_url=shared["WARMER_REDIS_URL"],
        state_url=shared["WARMER_STATE_URL"],
        broker_url=shared["WARMER_BROKER_URL"],
        storage_root=str(layout.store.root),
        cache_check_interval=0.5,
        rewarm_lock_ttl=1,
    )
    app = worker_app(settings)
    app.conf.task_default_queue = f"warmer-heal-{uuid.uuid4().hex[:8]}"
    app.conf.worker_hijack_root_logger = False
    yield app
    redis.Redis(host=redis_proc.host, port=redis_proc.port, db=DB.HEAL_BROKER).flushdb()


def test_a_heal_rewarm_that_always_fails_is_retried_less_and_less_often(
    heal_app: Any,
    layout: LayoutWriter,
    cache_redis: redis.Redis,
    state: StateStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fan-out task that fails every time (a bug): the chord errors, its summary never
    confirms the drop, and the lock expires after a second. Each heal re-warm must wait twice
    as long as the one before (1, 2, 4 s at a check interval of 0.5 s), not start at every
    look once the lock is gone."""
    _, blobs = layout.image("team/app", "v1", b"a", b"b")
    fan_out: list[float] = []

    def broken(*args: Any, **kwargs: Any) -> Any:
        fan_out.append(time.monotonic())
        raise RuntimeError("a bug in the fan-out")

    for i in range(10):
        cache_redis.sadd(f"repository::r{i}::blobs", "x")
    watch, rewarm_all = heal_app.tasks[WATCH_CACHE_TASK], heal_app.tasks[REWARM_TASK]
    looks: list[dict[str, Any]] = []

    def look() -> dict[str, Any]:  # one beat tick
        result: dict[str, Any] = watch.delay().get(timeout=30)
        looks.append(result)
        return result

    with start_worker(heal_app, pool="solo", perform_ping_check=False):
        assert not look()["emptied"]
        cache_redis.flushdb()
        monkeypatch.setattr(tasks.jobs, "rewarm", broken)
        wait_until(
            lambda: look() and len(fan_out) >= 4, timeout=40, interval=0.1, what="4 re-warms"
        )
        gaps = [b - a for a, b in itertools.pairwise(fan_out)]
        # At least (the lock's expiry and the tick add to them), less the queue's jitter.
        wanted = (1, 2, 4)
        assert all(g >= w - 0.5 for g, w in zip(gaps, wanted, strict=True)), (
            f"gaps between heal re-warms {gaps}: they should double"
        )
        assert max(r.get("unconfirmed", 0) for r in looks) >= 4, looks[-3:]
        assert state.heal_rewarms.read().attempts >= 4
        # Fixed; the nightly re-warm runs to its end: the drop is confirmed, the backoff gone.
        monkeypatch.undo()
        wait_until(
            lambda: state.lock_holder(REWARM_LOCK) is None, timeout=30, what="the lock to expire"
        )
        assert "tasks" in rewarm_all.delay().get(timeout=30)
        wait_until(
            lambda: all(cache_redis.sismember("repository::team/app::blobs", b) for b in blobs),
            timeout=30,
            what="the re-warm",
        )
        wait_until(
            lambda: state.heal_rewarms.read().attempts == 0, timeout=30, what="its confirmation"
        )
        assert look() == {
            "emptied": False,
            "rewarm": False,
            "unconfirmed": 0,
            "next_rewarm_in": 0.0,
            "swept": 0,
        }


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
