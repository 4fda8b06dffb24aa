"""The Celery task on real brokers (Redis and RabbitMQ) with a real worker in solo mode."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import _state as celery_state
from celery.contrib.testing.worker import start_worker

from bench.layout import LayoutWriter
from tasks import worker_app
from tests.support.redisdbs import shared_env
from tests.support.redisdump import dump
from worker.celeryapp import WarmerCelery
from worker.celeryapp.names import EVENTS_TASK, REWARM_TASK
from worker.config.settings import load_settings
from worker.registry.events import Event, Kind
from worker.state import StateStore

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"


def _rabbitmq_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest, redis_proc: Any) -> str:
    if request.param == "redis":
        return shared_env(redis_proc)["WARMER_BROKER_URL"]
    if not _rabbitmq_up():
        if os.environ.get("WARMER_REQUIRE_E2E") == "1":
            pytest.fail("RabbitMQ is not answering on 127.0.0.1:5672 (WARMER_REQUIRE_E2E=1)")
        pytest.skip("RabbitMQ is not answering on 127.0.0.1:5672")
    return RABBITMQ


@pytest.fixture
def app(
    broker_url: str,
    redis_proc: Any,
    layout: LayoutWriter,
    cache_redis: redis.Redis,
    state_redis: redis.Redis,
) -> Iterator[WarmerCelery]:
    layout.store.root.mkdir(parents=True, exist_ok=True)
    shared = shared_env(redis_proc)
    settings = load_settings(
        redis_url=shared["WARMER_REDIS_URL"],
        state_url=shared["WARMER_STATE_URL"],
        broker_url=broker_url,
        storage_root=str(layout.store.root),
    )
    app = worker_app(settings)
    queue = f"warmer-test-{uuid.uuid4().hex[:8]}"  # nothing left over from another run
    app.conf.task_default_queue = queue
    # The embedded worker's AMQP loop waits out a heartbeat tick (10 s) before it can stop;
    # tests do not need heartbeats, production keeps them.
    app.conf.broker_heartbeat = 0
    app.conf.worker_hijack_root_logger = False  # the test process keeps its own logging
    yield app
    with app.connection_for_write() as conn:
        conn.default_channel.queue_delete(queue)  # type: ignore[attr-defined]


def test_events_task_warms_and_returns_its_counters(
    app: WarmerCelery, layout: LayoutWriter, cache_redis: redis.Redis
) -> None:
    manifest, blobs = layout.image("team/app", "v1", b"a", b"b")
    messages = [
        Event("e1", Kind.WARM_MANIFEST, "team/app", manifest).as_message(),
        Event("e2", Kind.WARM_BLOB, "team/app", blobs[1]).as_message(),
    ]
    with start_worker(app, pool="solo", perform_ping_check=False):
        result = app.send_task(EVENTS_TASK, args=[messages]).get(timeout=30)
    # 3 blobs and (registry 3.x) the manifest, one blob already warm from the other event
    assert result["fetch"] == {"requests": 5, "hits": 1, "misses": 4}, result
    assert (result["warmed"], result["retry"], result["dead"]) == (5, 0, 0)
    assert set(dump(cache_redis)["repository::team/app::blobs"]) == {*blobs, manifest}


def test_dead_events_reach_the_dead_letter_list(
    app: WarmerCelery, state_redis: redis.Redis
) -> None:
    absent = "sha256:" + "0" * 64
    messages = [Event("e1", Kind.WARM_BLOB, "team/app", absent).as_message(), ["junk"]]
    with start_worker(app, pool="solo", perform_ping_check=False):
        result = app.send_task(EVENTS_TASK, args=[messages]).get(timeout=30)
    assert result["dead"] == 1
    reasons = [d.reason for d in StateStore(state_redis).dead_letters()]
    assert len(reasons) == 2
    assert any("malformed" in r for r in reasons)
    assert any("not linked" in r for r in reasons)


def test_the_app_is_configured_for_at_least_once_delivery(app: WarmerCelery) -> None:
    conf = app.conf
    assert conf.task_acks_late
    assert conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert not conf.task_send_sent_event  # the ledger counts what waits
    # Task events on demand (Flower turns them on: tests/integration/test_flower.py); no STARTED
    # state for the warm tasks, which run for milliseconds, but for the jobs that run for minutes.
    assert not conf.worker_send_task_events
    assert conf.task_track_started
    assert app.tasks[EVENTS_TASK].track_started is False
    assert app.tasks[REWARM_TASK].track_started
    options = conf.broker_transport_options
    assert options.get("visibility_timeout") == 60 or options.get("confirm_publish") is True


def test_each_app_runs_its_tasks_with_its_own_settings(
    redis_proc: Any, tmp_path: Path, cache_redis: redis.Redis, state_redis: redis.Redis
) -> None:
    holder = LayoutWriter(tmp_path / "two")
    digest = holder.blob(b"only in two")
    holder.link("team/app", digest)
    (tmp_path / "one").mkdir()
    urls = shared_env(redis_proc)
    apps = [
        worker_app(
            load_settings(
                redis_url=urls["WARMER_REDIS_URL"],
                state_url=urls["WARMER_STATE_URL"],
                storage_root=str(tmp_path / root),
            )
        )
        for root in ("one", "two")
    ]  # both built before either is used, as in a process that builds several
    # A shared task (Celery's default) leaves a constructor in a process-wide registry that
    # every app finalized later runs: which app's closure, so storage root, wins then depends
    # on a set's order.
    registry = celery_state._on_app_finalizers  # type: ignore[attr-defined]  # private, unstubbed
    shared = {callback.__name__ for callback in registry}
    assert not shared & {"events", "redeliver_overdue"}
    message = Event("e", Kind.WARM_BLOB, "team/app", digest).as_message()
    warmed = [app.tasks[EVENTS_TASK].apply(args=([message],)).get()["warmed"] for app in apps]
    assert warmed == [0, 1]
