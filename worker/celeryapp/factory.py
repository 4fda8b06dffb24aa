"""The Celery app, built explicitly from the settings: :func:`create_app`.

It knows the warmer's tasks by name only (:mod:`worker.celeryapp.names`): enough to publish them
and schedule them. A process that runs them registers them on it (:func:`tasks.worker_app`).

Delivery is at least once, never at most once: late acks, a message held by a worker that dies
goes back to the queue (``task_reject_on_worker_lost``; on Redis, after the visibility timeout),
one message at a time per worker process. Every write a task makes is idempotent, so a second
delivery is harmless.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from amqp.exceptions import NotFound as AmqpNotFound
from celery import Celery
from celery.schedules import crontab
from celery.signals import beat_init, setup_logging, worker_shutting_down
from kombu.exceptions import ChannelError as KombuChannelError

from worker.cache import BlobDescriptorCache
from worker.celeryapp.names import (
    AUDIT_TASK,
    EVENTS_TASK,
    RECONCILE_TASK,
    REDELIVER_TASK,
    REWARM_TASK,
    STATS_TASK,
    WATCH_CACHE_TASK,
)
from worker.celeryapp.urls import celery_redis
from worker.config.logformat import configure_logging
from worker.config.schedules import parse_schedule
from worker.config.settings import Settings
from worker.core.blobservice import CachedBlobService
from worker.core.clients import build_cache, build_state, build_store, state_redis
from worker.errors import ConfigError, WarmerError
from worker.registry.events import Message
from worker.state import StateStore
from worker.state.figures import Figures
from worker.state.rewarmruns import RewarmRuns
from worker.storage import Store

__all__ = ["PUBLISH_RETRY", "WarmerCelery", "WarmerContext", "check_schedules", "create_app"]

_log = logging.getLogger(__name__)

#: A publish retries briefly, then fails: the receiver answers 503 and the registry resends,
#: rather than the registry's request timing out while we wait on a broker that is down.
PUBLISH_RETRY: Final = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}


@dataclass
class WarmerContext:
    """The clients a worker process uses, built on first use in that process (after fork)."""

    settings: Settings
    publisher: Callable[[list[Message]], None] | None = field(default=None, init=False)
    queue_length: Callable[[], int] | None = field(default=None, init=False)
    _cache: BlobDescriptorCache | None = field(default=None, init=False)
    _store: Store | None = field(default=None, init=False)
    _state: StateStore | None = field(default=None, init=False)
    _runs: RewarmRuns | None = field(default=None, init=False)

    @property
    def first_wait(self) -> float:
        """How long an accepted event may take before the ledger sends it again: twice the
        broker's own redelivery delay, so a message the broker restores is not sent twice."""
        return 2.0 * self.settings.visibility_timeout

    def publish(self, messages: list[Message]) -> None:
        """Send messages as one ``warmer.events`` task (set by :func:`create_app`)."""
        assert self.publisher is not None, "create_app sets the publisher"
        self.publisher(messages)

    def queued(self) -> int:
        """Messages waiting in the tasks' queue now (set by :func:`create_app`)."""
        assert self.queue_length is not None, "create_app sets the queue length"
        return self.queue_length()

    @property
    def cache(self) -> BlobDescriptorCache:
        """The registry's cache."""
        if self._cache is None:
            self._cache = build_cache(self.settings)
        return self._cache

    @property
    def store(self) -> Store:
        """The registry's storage."""
        if self._store is None:
            self._store = build_store(self.settings)
        return self._store

    @property
    def state(self) -> StateStore:
        """The warmer's own state store."""
        if self._state is None:
            self._state = build_state(self.settings)
        return self._state

    @property
    def rewarm_runs(self) -> RewarmRuns:
        """The fan-out re-warms' records (in the state Redis)."""
        if self._runs is None:
            self._runs = RewarmRuns(state_redis(self.settings))
        return self._runs

    def service(self) -> CachedBlobService:
        """A cached service with fresh figures: one per task, so its result counts its own."""
        return CachedBlobService(self.cache, self.store, Figures(), self.state.unchecked)


class WarmerCelery(Celery):
    """A Celery app that carries the warmer's settings and per-process clients."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__("warmer", **kwargs)
        self.settings = settings
        self.context = WarmerContext(settings)


def check_schedules(settings: Settings) -> None:
    """Raise ConfigError, naming the variable, for a schedule beat could not run (``61 * * *
    *``): the settings check the shape, Celery's crontab the ranges."""
    _schedule(settings.rewarm_schedule, "WARMER_REWARM_SCHEDULE")
    _schedule(settings.reconcile_schedule, "WARMER_RECONCILE_SCHEDULE")


def _schedule(value: str, variable: str) -> float | crontab:
    parsed = parse_schedule(value)
    if isinstance(parsed, float):
        return parsed
    minute, hour, day_of_month, month_of_year, day_of_week = parsed
    try:
        return crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
        )
    except ValueError as exc:  # celery's own parser: ranges, names, steps
        raise ConfigError(
            f"{variable}={value!r} is not a crontab line beat can run: {exc}"
        ) from None


def _one_log_format(settings: Settings) -> Callable[..., None]:
    # Connected, this signal keeps Celery from setting up logging of its own: the worker and
    # beat log in the warmer's format. Under `warmer worker` / `beat` the command line has set
    # it up already (with -v); under `celery -A worker ...` this does, at the settings' level.
    def configure(**_: Any) -> None:
        if not logging.getLogger().handlers:
            configure_logging(settings.log_level or "INFO", settings.log_format)

    return configure


def _rewarm_when_empty(app: WarmerCelery) -> Callable[..., None]:
    # When beat starts on an empty cache (a new Redis, a flushed one, a Harbor GC), the
    # daily schedule is too long to wait: re-warm now.
    def handler(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", app) is not app:
            return
        try:
            if app.context.cache.is_empty():
                app.send_task(REWARM_TASK)
        except WarmerError as exc:
            _log.warning("could not check whether the cache is empty: %s", exc)

    return handler


def _bounded_shutdown(app: WarmerCelery) -> Callable[..., None]:
    # Celery's warm shutdown (SIGTERM, SIGINT) waits for running tasks however long they take.
    # Past the grace, a cold shutdown (SIGQUIT to this process) cancels them: their messages,
    # acknowledged late, go back to the queue, and the ledger has their events anyway.
    started = threading.Event()

    def handler(sender: Any = None, how: str = "", **_: Any) -> None:
        if how != "Warm" or started.is_set():
            return
        started.set()
        timer = threading.Timer(
            app.settings.shutdown_grace, os.kill, args=(os.getpid(), signal.SIGQUIT)
        )
        timer.daemon = True  # a worker done sooner exits without waiting for it
        timer.start()

    return handler


def _argsrepr(messages: list[Message]) -> str:
    # What Flower and the worker's log show of a warm task's arguments: Celery's own repr of a
    # batch costs a fifth of its publish (the task's result keeps the arguments whole).
    if len(messages) == 1:
        return f"[1 event: {messages[0]!r}]"
    return f"[{len(messages)} events: {messages[0]!r}, ...]" if messages else "[0 events]"


def create_app(settings: Settings) -> WarmerCelery:
    """The warmer's Celery app: configured, scheduled, able to publish; no task registered."""
    broker, transport = celery_redis(settings.broker_url)
    backend, backend_transport = celery_redis(settings.results_url)
    app = WarmerCelery(settings, broker=broker, backend=backend)
    if urlsplit(settings.broker_url).scheme.startswith(("redis", "rediss", "sentinel")):
        # A message a worker took and never acknowledged (it was killed) is handed out again
        # after this long. Warm tasks take milliseconds, so the default (60 s) is short.
        transport["visibility_timeout"] = settings.visibility_timeout
    else:
        # RabbitMQ: a publish returns once the broker has taken the message.
        transport["confirm_publish"] = True
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=transport,
        result_backend_transport_options=backend_transport,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # Results expire in hours: at a task a second, days of them would be gigabytes.
        result_expires=settings.result_ttl,
        result_extended=True,
        # Task events on demand: Flower turns them on in every worker it sees (every 5 s; they
        # stay on until the worker restarts), and `warmer worker -E` always. A worker nobody
        # watches spends less on each task without them (BENCHMARKS.md, lever 8). No sent
        # events: a quarter of the receiver's publish, and what waits is the ledger's pending
        # events (warmer stats, /metrics); Flower shows a task once a worker has it.
        worker_send_task_events=False,
        task_send_sent_event=False,
        # STARTED in a task's result while it runs: rewarm and reconcile run for minutes; the
        # warm tasks, which run for milliseconds, leave it out (tasks/events.py).
        task_track_started=True,
    )
    app.conf.beat_schedule = {
        # The ledger's clock: overdue events are looked for twice per visibility timeout.
        "redeliver-overdue-events": {
            "task": REDELIVER_TASK,
            "schedule": max(1.0, settings.visibility_timeout / 2),
        },
        "stats": {"task": STATS_TASK, "schedule": settings.stats_interval},
        # A cache emptied or restarted (no persistence, a Harbor GC) is re-warmed within this.
        "watch-cache": {"task": WATCH_CACHE_TASK, "schedule": settings.cache_check_interval},
        "rewarm": {
            "task": REWARM_TASK,
            "schedule": _schedule(settings.rewarm_schedule, "WARMER_REWARM_SCHEDULE"),
        },
        "reconcile": {
            "task": RECONCILE_TASK,
            "schedule": _schedule(settings.reconcile_schedule, "WARMER_RECONCILE_SCHEDULE"),
        },
    }
    if settings.audit_requests_per_1000_pulls and settings.audit_requests_per_minute:
        # A random sample checked against the store, paid for by the pulls since the last look.
        app.conf.beat_schedule["audit"] = {"task": AUDIT_TASK, "schedule": settings.audit_interval}
    beat_init.connect(_rewarm_when_empty(app), weak=False)
    setup_logging.connect(_one_log_format(settings), weak=False)
    worker_shutting_down.connect(_bounded_shutdown(app), weak=False)

    def publish(messages: list[Message]) -> None:
        app.send_task(
            EVENTS_TASK,
            args=[messages],
            argsrepr=_argsrepr(messages),
            kwargsrepr="{}",
            retry=True,
            retry_policy=PUBLISH_RETRY,
        )

    def queue_length() -> int:
        with app.connection_for_read() as conn:
            try:
                declared = conn.default_channel.queue_declare(  # type: ignore[attr-defined]
                    queue=app.conf.task_default_queue, passive=True
                )
            except (KombuChannelError, AmqpNotFound):  # no such queue yet: nothing waits
                return 0
            return int(declared.message_count)

    app.context.publisher = publish
    app.context.queue_length = queue_length
    return app
