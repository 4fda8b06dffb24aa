"""Scheduled jobs (Celery beat): ``warmer.stats``, ``warmer.rewarm`` (fanned out, one task per
repository, then one summary; one at a time across machines), and ``warmer.watch_cache`` (a cache
emptied or restarted is re-warmed); the cache's checks against the store are in
:mod:`tasks.checks`."""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from celery import chord

from tasks.base import RetryOnTrouble, another_try
from worker.celeryapp.names import (
    REWARM_REPOSITORY_TASK,
    REWARM_SUMMARY_TASK,
    REWARM_TASK,
    STATS_TASK,
    WATCH_CACHE_TASK,
)
from worker.core.heal import REWARM_LOCK, heal, note_cache_size
from worker.core.rewarm import SHARDS, RewarmSummary, plan, rewarm, summarize
from worker.errors import RepositoryNotFoundError, WarmerError
from worker.state.figures import take_snapshot

if TYPE_CHECKING:
    from celery import Task

    from worker.celeryapp import WarmerCelery

    _Task = Task[Any, Any]

__all__ = ["register_job_tasks"]

_log = logging.getLogger(__name__)


def register_job_tasks(app: WarmerCelery) -> None:
    """Register the scheduled jobs on ``app``."""

    lock_ttl = app.settings.rewarm_lock_ttl

    def finish(parts: list[dict[str, int | float]], lock: str | None) -> dict[str, int | float]:
        total = summarize(parts)
        app.context.state.record_last("rewarm", {**total, "at": time.time()})
        # What the cache holds now is what the next look for an emptied cache compares with.
        note_cache_size(app.context.cache, app.context.state)
        if lock is not None:
            app.context.state.release_lock(REWARM_LOCK, lock)
        return total

    @app.task(shared=False, name=STATS_TASK)
    def stats() -> dict[str, Any]:
        return take_snapshot(app.context.state, now=time.time())

    @app.task(shared=False, name=REWARM_TASK, base=RetryOnTrouble)
    def rewarm_all() -> dict[str, Any]:
        # One re-warm at a time across machines: the lock passes from this task to the fan-out,
        # whose tasks keep it alive and whose summary lets it go; if they die, it expires.
        state = app.context.state
        lock = uuid.uuid4().hex
        if not state.acquire_lock(REWARM_LOCK, lock, lock_ttl):
            return {"skipped": "another re-warm is running"}
        try:
            tasks = plan(app.context.store, state.recently_pulled())
            if not tasks:
                return finish([], lock)
            header = (rewarm_repository.s(name, shard, lock=lock) for name, shard in tasks)
            chord(header)(summarize_rewarm.s(lock=lock))
        except BaseException:
            state.release_lock(REWARM_LOCK, lock)
            raise
        return {"tasks": len(tasks)}

    @app.task(shared=False, name=WATCH_CACHE_TASK, base=RetryOnTrouble)
    def watch_cache() -> dict[str, Any]:
        # Writes whose writer died before re-checking them: checked now (a delete always wins).
        # Whatever happens there, the look for an emptied cache below still runs.
        try:
            swept: int | str = app.context.service().writer.sweep()
        except WarmerError as exc:
            _log.warning("sweep of unchecked writes failed: %s", exc)
            swept = f"failed: {exc}"
        # A re-warm when the cache was emptied; while such re-warms keep failing, backing off.
        look = heal(
            app.context.cache,
            app.context.state,
            now=time.time(),
            interval=app.settings.cache_check_interval,
        )
        if look.rewarm:
            _log.warning(
                "the cache was emptied or restarted: re-warming (heal re-warm %d since one last "
                "ran to its end; should it fail too, the next in %.0f s)",
                look.unconfirmed,
                look.wait,
            )
            rewarm_all.delay()
        elif look.emptied:
            _log.info(
                "the cache's drop is still pending after %d heal re-warms: backing off %.0f s",
                look.unconfirmed,
                look.wait,
            )
        return {**look.as_dict(), "swept": swept}

    @app.task(bind=True, shared=False, name=REWARM_REPOSITORY_TASK, base=RetryOnTrouble)
    def rewarm_repository(
        self: _Task, name: str, shard: str = "", lock: str | None = None
    ) -> dict[str, int | float]:
        shown = [0.0]

        def progress(summary: RewarmSummary) -> None:
            if time.monotonic() - shown[0] >= 1.0:  # Flower shows it; once a second is plenty
                shown[0] = time.monotonic()
                self.update_state(state="PROGRESS", meta=summary.as_dict())
                if lock is not None:
                    app.context.state.refresh_lock(REWARM_LOCK, lock, lock_ttl)

        if lock is not None:
            app.context.state.refresh_lock(REWARM_LOCK, lock, lock_ttl)

        try:
            summary = rewarm(
                app.context.service(),
                [name],
                shard=shard,
                on_progress=progress,
                # Another try of this task may follow one that died between a write and its
                # re-check: the entries it left are hits now, so they are checked too.
                recheck_hits=another_try(self),
            )
        except RepositoryNotFoundError:
            # Deleted between the plan and this task: nothing to warm, and the chord's summary
            # must still be written, so this is a result, not a failure.
            return RewarmSummary(skipped=int(shard in ("", SHARDS[0]))).as_dict()
        return summary.as_dict()

    @app.task(shared=False, name=REWARM_SUMMARY_TASK)
    def summarize_rewarm(
        parts: list[dict[str, int | float]], lock: str | None = None
    ) -> dict[str, int | float]:
        return finish(parts, lock)
