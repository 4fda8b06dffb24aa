"""The warmer's Celery app for a test, in-process, on the session's Redis server: the shared
cache and state DBs and a broker DB of the test's own, which is emptied before and after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from bench.layout import LayoutWriter
from tasks import worker_app
from tests.support.redisdbs import shared_env
from worker.celeryapp import WarmerCelery
from worker.config.settings import load_settings

__all__ = ["celery_app"]


@contextmanager
def celery_app(
    redis_proc: Any, layout: LayoutWriter, *, broker: int, token: str
) -> Iterator[tuple[WarmerCelery, dict[str, str]]]:
    """The app over ``layout``'s store and the environment that configures it (for a CLI run
    or a receiver in the same test)."""
    layout.store.root.mkdir(parents=True, exist_ok=True)
    queue = redis.Redis(host=redis_proc.host, port=redis_proc.port, db=broker)
    queue.flushdb()
    env = {
        **shared_env(redis_proc, broker=broker),
        "WARMER_STORAGE_ROOT": str(layout.store.root),
        "WARMER_WEBHOOK_TOKEN": token,
    }
    settings = load_settings(**{k.removeprefix("WARMER_").lower(): v for k, v in env.items()})
    app = worker_app(settings)
    app.conf.worker_hijack_root_logger = False  # the test process keeps its own logging
    try:
        yield app, env
    finally:
        queue.flushdb()
        queue.close()
