"""A backlog is not a loss: with the workers stopped for two hours while events arrive, nothing
is dead-lettered, every event is applied once a worker is back, and the ledger's re-sends add at
most one duplicate per event.

Real processes: ``warmer webhook`` takes the stream, a real broker queue holds it, a real
``warmer worker`` drains it at the end. The two hours are the ledger's: its beat task runs every
half visibility timeout (240 times in two hours), here called with that clock and the real
queue length.
"""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import redis

from bench.layout import LayoutWriter
from tests.support.notifications import envelope, event
from tests.support.redisdbs import DB, shared_env
from tests.support.registry import free_port
from tests.support.sender import RegistryLikeSender
from tests.support.services import warmer_process, webhook_ready
from worker.celeryapp import create_app
from worker.cli.processes import wait_until
from worker.config.settings import load_settings
from worker.state import StateStore
from worker.state.ledger import redeliver

TOKEN = "backlog-token"
EVENTS = 40
BROKER_DB = DB.BACKLOG_BROKER


def _queued_events(broker: redis.Redis) -> Counter[str]:
    """Event ids of every events task waiting in the broker's queue, with their counts."""
    ids: Counter[str] = Counter()
    for raw in broker.lrange("celery", 0, -1):
        message = json.loads(raw)
        args, _, _ = json.loads(base64.b64decode(message["body"]))
        if message["headers"]["task"] == "warmer.events":
            ids.update(m[0] for m in args[0])
    return ids


def test_two_hours_without_workers_lose_nothing_and_duplicate_at_most_once(
    redis_proc: Any,
    layout: LayoutWriter,
    cache_redis: redis.Redis,
    state_redis: redis.Redis,
    tmp_path: Path,
) -> None:
    broker = redis.Redis(host=redis_proc.host, port=redis_proc.port, db=BROKER_DB)
    broker.flushdb()
    env = {
        **shared_env(redis_proc, broker=BROKER_DB),
        "WARMER_STORAGE_ROOT": str(layout.store.root),
        "WARMER_WEBHOOK_TOKEN": TOKEN,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARMER_")} | env
    pushed = []
    for i in range(EVENTS):
        digest = layout.blob(f"backlog {i}".encode())
        layout.link("team/app", digest)
        pushed.append(digest)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    state = StateStore(state_redis)
    settings = load_settings(**{k.removeprefix("WARMER_").lower(): v for k, v in env.items()})
    app = create_app(settings)
    with warmer_process(["webhook", "--port", str(port)], env, tmp_path / "webhook.log"):
        wait_until(lambda: webhook_ready(url), timeout=30, what="webhook /readyz")
        bodies = [envelope(event("push", "team/app", d)) for d in pushed]
        # The stream keeps arriving during the outage: half before the first tick, half later.
        first = RegistryLikeSender(f"{url}/events", TOKEN, bodies[: EVENTS // 2])
        first.start()
        first.join(60)
        step = settings.visibility_timeout / 2
        start = float(broker.time()[0])
        for tick in range(int(2 * 3600 / step)):
            if tick == 120:
                second = RegistryLikeSender(f"{url}/events", TOKEN, bodies[EVENTS // 2 :])
                second.start()
                second.join(60)
                # Tracked now, so on the ledger's two-hour clock they are due from here on.
                start = float(broker.time()[0]) - tick * step
            redeliver(
                state,
                app.context.publish,
                now=start + tick * step + 2 * settings.visibility_timeout + 1,
                first_wait=app.context.first_wait,
                queued=app.context.queued(),
            )
        assert state.dead_letter_count() == 0
        assert state.pending_count() == EVENTS
        queued = _queued_events(broker)
        assert len(queued) == EVENTS
        assert max(queued.values()) <= 2, queued.most_common(3)  # at most one duplicate

        worker = ["worker", "--pool", "solo", "--without-mingle", "--without-gossip"]
        with warmer_process(worker, env, tmp_path / "worker.log"):

            def applied() -> bool:
                return all(cache_redis.sismember("repository::team/app::blobs", d) for d in pushed)

            wait_until(applied, timeout=90, what="every event applied")
            wait_until(lambda: state.pending_count() == 0, timeout=60, what="an empty ledger")
    assert state.dead_letter_count() == 0
    broker.flushdb()
