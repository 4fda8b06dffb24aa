"""Broker, result backend and state through a Sentinel, in the warmer's one URL format: a task
sent, run by a real worker, its result and its figures read back from the Sentinel's master."""

from __future__ import annotations

from pathlib import Path

import redis
from celery.contrib.testing.worker import start_worker

from bench.layout import LayoutWriter
from tasks import worker_app
from tests.support.redis_servers import redis_sentinel
from worker.celeryapp.names import EVENTS_TASK
from worker.celeryapp.urls import celery_redis
from worker.config.connections import connect
from worker.config.settings import load_settings
from worker.registry.events import Event, Kind
from worker.state import StateStore
from worker.state.figures import read


def test_a_sentinel_url_is_spelled_for_celery() -> None:
    url, options = celery_redis(
        "redis://:pw@s1:26379,s2:26380/3?master_name=mymaster&sentinel_password=spw"
    )
    assert url == "sentinel://:pw@s1:26379/3;sentinel://:pw@s2:26380/3"
    assert options == {"master_name": "mymaster", "sentinel_kwargs": {"password": "spw"}}
    assert celery_redis("rediss://cache:6380/0") == (
        "rediss://cache:6380/0?ssl_cert_reqs=required",
        {},
    )
    assert celery_redis("amqp://guest@rabbit//") == ("amqp://guest@rabbit//", {})


def test_tasks_run_with_broker_backend_and_state_behind_a_sentinel(
    tmp_path: Path, layout: LayoutWriter, cache_redis: redis.Redis
) -> None:
    digest = layout.blob(b"through a sentinel")
    layout.link("team/app", digest)
    with redis_sentinel(tmp_path / "sentinel") as sentinel:
        kwargs = cache_redis.connection_pool.connection_kwargs
        settings = load_settings(
            redis_url=f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}",
            broker_url=sentinel.url(1),
            state_url=sentinel.url(2),
            storage_root=str(layout.store.root),
        )
        app = worker_app(settings)
        app.conf.worker_hijack_root_logger = False
        message = Event("s1", Kind.WARM_BLOB, "team/app", digest).as_message()
        with start_worker(app, pool="solo", perform_ping_check=False):
            result = app.send_task(EVENTS_TASK, args=[[message]]).get(timeout=30)
        assert result["warmed"] == 1
        assert cache_redis.sismember("repository::team/app::blobs", digest)
        state = StateStore(connect(sentinel.url(2), timeout=5))
        assert read(state).warmed == 1  # the figures went to the Sentinel's master
        master = redis.Redis(port=sentinel.master(), db=1)
        assert master.dbsize() > 0  # the broker's keys too
        master.close()
