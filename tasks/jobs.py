"""Scheduled jobs (Celery beat): ``warmer.stats``, ``warmer.rewarm`` (fanned out in chunks of
repositories as the store is walked, then one summary; one at a time across machines), and
``warmer.watch_cache`` (a cache emptied or restarted is re-warmed); the cache's checks against
the store are in :mod:`tasks.checks`."""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from tasks.base import RetryOnTrouble, another_try
from worker.celeryapp.names import (
    REWARM_CHUNK_TASK,
    REWARM_SUMMARY_TASK,
    REWARM_TASK,
    STATS_TASK,
    WATCH_CACHE_TASK,
)
from worker.core.fanout import plan
from worker.core.heal import REWARM_LOCK, heal, note_cache_size
from worker.core.rewarm import RewarmSummary, rewarm
from worker.errors import WarmerError
from worker.state.figures import take_snapshot

if TYPE_CHECKING:
    from celery import Task

    from worker.celeryapp import WarmerCelery

    _Task = Task[Any, Any]

__all__ = ["register_job_tasks"]

_log = logging.getLogger(__name__)

#: Seconds between a re-warm's signs of life: Flower's progress and the lock's refresh.
_SHOW_EVERY = 1.0


def register_job_tasks(app: WarmerCelery) -> None:
    """Register the scheduled jobs on ``app``."""

    @app.task(shared=False, name=STATS_TASK)
    def stats() -> dict[str, Any]:
        return take_snapshot(app.context.state, now=time.time())

    rewarm_all = _register_rewarm(app)

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


def _register_rewarm(app: WarmerCelery) -> _Task:
    """Register the fan-out re-warm's tasks on ``app``: the planner (returned), its chunks'
    and the summary."""

    lock_ttl = app.settings.rewarm_lock_ttl

    @app.task(bind=True, shared=False, name=REWARM_TASK, base=RetryOnTrouble)
    def rewarm_all(self: _Task) -> dict[str, Any]:
        # One re-warm at a time across machines: the lock passes from this task to the fan-out,
        # whose tasks keep it alive and whose summary lets it go; if they die, it expires. Its
        # token names the run: the run's record (worker.state.rewarmruns) counts the tasks.
        state, runs = app.context.state, app.context.rewarm_runs
        run = uuid.uuid4().hex
        if not state.acquire_lock(REWARM_LOCK, run, lock_ttl):
            return {"skipped": "another re-warm is running"}
        sent, unshown, shown = 0, 0, time.monotonic()
        try:
            runs.start(run, time.time())
            # Each chunk is sent as it is cut: no list of every repository, here or in a chord.
            for chunk in plan(app.context.store, state.recently_pulled()):
                app.send_task(
                    REWARM_CHUNK_TASK,
                    args=[chunk.names, chunk.shard],
                    kwargs={"run": run, "index": sent},
                    # What Flower shows: a chunk's names in full are in its result.
                    argsrepr=f"[{len(chunk.names)} repositories from {chunk.names[0]!r}], "
                    f"{chunk.shard!r}",
                )
                sent, unshown = sent + 1, unshown + 1
                if time.monotonic() - shown >= _SHOW_EVERY:
                    shown = time.monotonic()
                    runs.sent(run, unshown)
                    unshown = 0
                    state.refresh_lock(REWARM_LOCK, run, lock_ttl)
                    self.update_state(state="PROGRESS", meta={"tasks": sent, "run": run})
            runs.sent(run, unshown)
            if runs.planned(run, sent):  # every task ran before this word: the summary is ours
                summarize_rewarm.delay(run)
        except BaseException:
            state.release_lock(REWARM_LOCK, run)
            raise
        return {"tasks": sent, "run": run}

    @app.task(bind=True, shared=False, name=REWARM_CHUNK_TASK, base=RetryOnTrouble)
    def rewarm_chunk(
        self: _Task,
        names: list[str],
        shard: str = "",
        run: str | None = None,
        index: int = 0,
    ) -> dict[str, int | float]:
        shown = [0.0]

        def progress(summary: RewarmSummary) -> None:
            if time.monotonic() - shown[0] >= _SHOW_EVERY:  # Flower shows it; once a second
                shown[0] = time.monotonic()
                self.update_state(state="PROGRESS", meta=summary.as_dict())
                if run is not None:
                    app.context.state.refresh_lock(REWARM_LOCK, run, lock_ttl)

        if run is not None:
            app.context.state.refresh_lock(REWARM_LOCK, run, lock_ttl)
        summary = rewarm(
            app.context.service(),
            names,
            shard=shard,
            on_progress=progress,
            # Another try of this task may follow one that died between a write and its
            # re-check: the entries it left are hits now, so they are checked too.
            recheck_hits=another_try(self),
            # Deleted between the plan and this task: skipped, and the others warmed.
            skip_missing=True,
        ).as_dict()
        # Counted once whatever the tries; the task that completes the run sends its summary
        # (again, if a try sent it and died: only one summary task takes the totals).
        if run is not None and app.context.rewarm_runs.done(run, index, summary):
            summarize_rewarm.delay(run)
        return summary

    @app.task(shared=False, name=REWARM_SUMMARY_TASK, base=RetryOnTrouble)
    def summarize_rewarm(run: str) -> dict[str, Any]:
        totals = app.context.rewarm_runs.claim_summary(run)
        if totals is None:
            return {"skipped": "summarized already, or not complete"}
        started = totals.pop("started")
        summary = {k: totals[k] for k in RewarmSummary().as_dict() if k in totals}
        summary["seconds"] = round(time.time() - started, 3)  # the run's, planner to last task
        summary["tasks"] = totals["tasks"]
        app.context.state.record_last("rewarm", {**summary, "at": time.time()})
        # What the cache holds now is what the next look for an emptied cache compares with.
        note_cache_size(app.context.cache, app.context.state)
        app.context.state.release_lock(REWARM_LOCK, run)
        return summary

    return rewarm_all
