"""Scheduled jobs (Celery beat): ``warmer.stats``, ``warmer.rewarm`` (fanned out, one task per
repository, then one summary) and ``warmer.reconcile``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from celery import chord

from tasks.base import RetryOnTrouble
from worker.celeryapp.names import (
    RECONCILE_TASK,
    REWARM_REPOSITORY_TASK,
    REWARM_SUMMARY_TASK,
    REWARM_TASK,
    STATS_TASK,
)
from worker.core.reconcile import reconcile
from worker.core.rewarm import SHARDS, RewarmSummary, plan, rewarm, summarize
from worker.errors import RepositoryNotFoundError
from worker.state.figures import take_snapshot

if TYPE_CHECKING:
    from celery import Task

    from worker.celeryapp import WarmerCelery

    _Task = Task[Any, Any]

__all__ = ["register_job_tasks"]


def register_job_tasks(app: WarmerCelery) -> None:
    """Register the scheduled jobs on ``app``."""

    def finish(parts: list[dict[str, int | float]]) -> dict[str, int | float]:
        total = summarize(parts)
        app.context.state.record_last("rewarm", {**total, "at": time.time()})
        return total

    @app.task(shared=False, name=STATS_TASK)
    def stats() -> dict[str, Any]:
        return take_snapshot(app.context.state, now=time.time())

    @app.task(shared=False, name=REWARM_TASK, base=RetryOnTrouble)
    def rewarm_all() -> dict[str, Any]:
        tasks = plan(app.context.store, app.context.state.recently_pulled())
        if not tasks:
            return finish([])
        chord(rewarm_repository.s(name, shard) for name, shard in tasks)(summarize_rewarm.s())
        return {"tasks": len(tasks)}

    @app.task(bind=True, shared=False, name=REWARM_REPOSITORY_TASK, base=RetryOnTrouble)
    def rewarm_repository(self: _Task, name: str, shard: str = "") -> dict[str, int | float]:
        shown = [0.0]

        def progress(summary: RewarmSummary) -> None:
            if time.monotonic() - shown[0] >= 1.0:  # Flower shows it; once a second is plenty
                shown[0] = time.monotonic()
                self.update_state(state="PROGRESS", meta=summary.as_dict())

        try:
            summary = rewarm(app.context.service(), [name], shard=shard, on_progress=progress)
        except RepositoryNotFoundError:
            # Deleted between the plan and this task: nothing to warm, and the chord's summary
            # must still be written, so this is a result, not a failure.
            return RewarmSummary(skipped=int(shard in ("", SHARDS[0]))).as_dict()
        return summary.as_dict()

    @app.task(shared=False, name=REWARM_SUMMARY_TASK)
    def summarize_rewarm(parts: list[dict[str, int | float]]) -> dict[str, int | float]:
        return finish(parts)

    @app.task(shared=False, name=RECONCILE_TASK, base=RetryOnTrouble)
    def reconcile_all() -> dict[str, Any]:
        summary = reconcile(app.context.cache, app.context.store).as_dict()
        app.context.state.record_last("reconcile", {**summary, "at": time.time()})
        return summary
