"""Memory that does not grow with time: every key the warmer writes expires or is capped.

Real Redis throughout; the results are read from a real worker's result backend.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from starlette.testclient import TestClient

from bench.layout import LayoutWriter
from tasks import worker_app
from tests.support.notifications import envelope, event
from tests.support.redisdbs import DB
from worker.celeryapp.names import EVENTS_TASK
from worker.cli.processes import wait_until
from worker.cli.stats import stats_view
from worker.config.settings import load_settings
from worker.core.clients import build_state
from worker.receiver.webhook import create_webhook
from worker.registry.events import Event, Kind
from worker.state import StateStore

TOKEN = "bounded-token"
D = "sha256:" + "d" * 64


def _settings(redis_proc: Any, **overrides: Any) -> Any:
    base = f"redis://{redis_proc.host}:{redis_proc.port}"
    return load_settings(
        redis_url=f"{base}/{DB.CACHE}",
        state_url=f"{base}/{DB.STATE}",
        broker_url=f"{base}/{DB.BROKER}",
        **overrides,
    )


def test_the_dead_letter_list_keeps_the_newest_and_counts_what_it_dropped(
    state_redis: redis.Redis,
) -> None:
    state = StateStore(state_redis, deadletter_max=100)
    state.dead_letter((f"first {i}", i) for i in range(250))
    state.dead_letter((f"second {i}", i) for i in range(30))
    assert state.dead_letter_count() == 100
    assert state.dead_letters_dropped() == 180
    letters = state.dead_letters()
    assert (letters[0].reason, letters[-1].reason) == ("first 180", "second 29")
    assert stats_view(state)["dead_letters_dropped"] == 180


def test_one_envelope_of_many_bad_events_is_capped_counted_and_logged_once(
    redis_proc: Any, state_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    state = build_state(_settings(redis_proc, deadletter_max=1000))
    published: list[Any] = []
    app = create_webhook(
        state=state, publish=published.append, token=TOKEN, first_wait=60, window=0.001
    )
    body = b'{"events": [' + b",".join([b"1"] * 50_000) + b"]}"
    headers = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}
    with caplog.at_level(logging.WARNING, logger="worker.receiver.webhook"), TestClient(app) as c:
        answer = c.post("/events", content=body, headers=headers)
        assert answer.status_code == 202
        assert answer.json()["rejected"] == 50_000
        metrics = c.get("/metrics").text
        debug = c.get("/debug/vars").json()
    assert state.dead_letter_count() == 1000
    assert "warmer_dead_letters_dropped_total 49000.0" in metrics
    assert debug["warmer"]["dead_letters_dropped"] == 49_000
    lines = [r for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert len(lines) == 1
    assert "50000" in lines[0].getMessage()


def test_dedup_keys_expire_within_the_dedup_window(
    redis_proc: Any, state_redis: redis.Redis
) -> None:
    state = build_state(_settings(redis_proc, dedup_ttl=120))
    state.mark_seen(["an-event"])
    ttl = state_redis.ttl("warmer:seen:an-event")
    assert 0 < ttl <= 120


def test_pulls_cost_no_task_and_no_key_each_and_are_summed_per_repository(
    state_redis: redis.Redis,
) -> None:
    state = StateStore(state_redis)
    published: list[Any] = []
    app = create_webhook(
        state=state,
        publish=published.append,
        token=TOKEN,
        first_wait=60,
        window=0.001,
        pull_flush_interval=0.05,
    )
    headers = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}
    with TestClient(app) as client:
        for _ in range(20):
            pulls = [event("pull", "team/app", D) for _ in range(4)] + [event("pull", "b", D)]
            assert (
                client.post("/events", content=envelope(*pulls), headers=headers).json()["accepted"]
                == 5
            )
        wait_until(lambda: state.pulls("team/app") == 80, timeout=10, what="the pull sums")
    assert state.pulls("b") == 20
    assert published == []
    assert not list(state_redis.scan_iter("warmer:seen:*"))
    assert set(state.recently_pulled()) == {"team/app", "b"}


def test_task_results_expire_in_hours(
    redis_proc: Any, layout: LayoutWriter, state_redis: redis.Redis, cache_redis: redis.Redis
) -> None:
    layout.store.root.mkdir(parents=True, exist_ok=True)
    settings = _settings(redis_proc, storage_root=str(layout.store.root))
    assert settings.result_ttl <= 12 * 3600  # the default: hours, not days
    app = worker_app(settings.model_copy(update={"result_ttl": 5400}))
    app.conf.task_default_queue = f"warmer-test-{uuid.uuid4().hex[:8]}"
    app.conf.worker_hijack_root_logger = False
    message = Event("e1", Kind.WARM_BLOB, "team/app", D).as_message()
    with start_worker(app, pool="solo", perform_ping_check=False):
        result = app.send_task(EVENTS_TASK, args=[[message]])
        result.get(timeout=30)
    ttl = state_redis.ttl(f"celery-task-meta-{result.id}")
    assert 0 < ttl <= 5400
