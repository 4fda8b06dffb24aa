"""Scheduled jobs (Celery beat): ``warmer.stats``, ``warmer.rewarm`` (fanned out in chunks of
repositories as the store is walked, then one summary; one at a time across machines), and
``warmer.watch_cache`` (a cache emptied or restarted is re-warmed); the cache's checks against
the store are in :mod:`tasks.checks`."""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, cast

from tasks.base import RetryOnTrouble, another_try
from worker.celeryapp.names import (
    REWARM_CHUNK_TASK,
    REWARM_REPOSITORY_TASK,
    REWARM_RUN_SUMMARY_TASK,
    REWARM_TASK,
    STATS_TASK,
    WATCH_CACHE_TASK,
)
from worker.core.fanout import plan
from worker.core.heal import REWARM_LOCK, heal, note_cache_size
from worker.core.rewarm import RewarmSummary, rewarm
from worker.errors import WarmerError
from worker.state.figures import take_snapshot
from worker.state.rewarmruns import FIGURES, PLANNED, SUMMARIZED

if TYPE_CHECKING:
    from celery import Task

    from worker.celeryapp import WarmerCelery

    _Task = Task[Any, Any]
else:
    from celery import Task as _Task

__all__ = ["RewarmChunk", "register_job_tasks"]

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


class RewarmChunk(RetryOnTrouble):
    """A fan-out re-warm's chunk task. One that fails for good (an error no retry helps, or
    its retries used up) still counts in its run, as a failed task: else the run never
    completes, no summary is written and the lock blocks every re-warm until its TTL."""

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        run, index = (kwargs or {}).get("run"), (kwargs or {}).get("index", 0)
        if run is None:
            return
        app = cast("WarmerCelery", self.app)
        try:
            if app.context.rewarm_runs.failed(run, int(index)):
                app.send_task(REWARM_RUN_SUMMARY_TASK, args=[run])
        except Exception as trouble:  # the state Redis or the broker away: the lock expires
            _log.warning(
                "re-warm %s: task %s failed, and so did counting it: %s", run, index, trouble
            )


def _register_rewarm(app: WarmerCelery) -> _Task:
    """Register the fan-out re-warm's tasks on ``app``: the planner (returned), its chunks',
    the summary, and the previous release's task a repository."""

    lock_ttl = app.settings.rewarm_lock_ttl
    summarize_rewarm = _register_summary(app)

    @app.task(bind=True, shared=False, name=REWARM_TASK, base=RetryOnTrouble)
    def rewarm_all(self: _Task) -> dict[str, Any]:
        # One re-warm at a time across machines: the lock passes from this task to the fan-out,
        # whose tasks keep it alive and whose summary lets it go; if they die, it expires. Its
        # token names the run: the run's record (worker.state.rewarmruns) counts the tasks. The
        # run is this task's id: a retry or a redelivery of it finds the lock its own and
        # resumes the run (the tasks it sends again count once).
        state, runs = app.context.state, app.context.rewarm_runs
        run = self.request.id or uuid.uuid4().hex  # a call outside Celery has no id
        if not (
            state.acquire_lock(REWARM_LOCK, run, lock_ttl)
            or state.refresh_lock(REWARM_LOCK, run, lock_ttl)
        ):
            return {"skipped": "another re-warm is running"}
        sent, shown = 0, time.monotonic()
        try:
            begun = runs.start(run, time.time())
            if begun == SUMMARIZED:  # a redelivery of a planner whose run is over
                state.release_lock(REWARM_LOCK, run)
                return {"skipped": "this re-warm ran to its end already", "run": run}
            if begun == PLANNED:  # every task sent already; the summary, should none be sent
                progress = runs.progress(run) or {}
                sent = int(progress.get("tasks", 0))
            else:
                # Each chunk sent as it is cut: no list of every repository, here or in a chord.
                for chunk in plan(app.context.store, state.recently_pulled()):
                    app.send_task(
                        REWARM_CHUNK_TASK,
                        args=[chunk.names, chunk.shard],
                        kwargs={"run": run, "index": sent},
                        # What Flower shows: a chunk's names in full are in its result.
                        argsrepr=f"[{len(chunk.names)} repositories from {chunk.names[0]!r}], "
                        f"{chunk.shard!r}",
                        # Not kept in this task's request: 200 results for a million links.
                        add_to_parent=False,
                    )
                    sent += 1
                    if time.monotonic() - shown >= _SHOW_EVERY:
                        shown = time.monotonic()
                        runs.sent(run, sent)
                        state.refresh_lock(REWARM_LOCK, run, lock_ttl)
                        self.update_state(state="PROGRESS", meta={"tasks": sent, "run": run})
            if runs.planned(run, sent):  # every task ran before this word: the summary is ours
                summarize_rewarm.delay(run)
        except BaseException:
            # Sent tasks run on and keep the lock: let go of it only while none is, else a
            # second re-warm would start beside them (a retry of this task resumes the run).
            if sent == 0:
                state.release_lock(REWARM_LOCK, run)
            raise
        return {"tasks": sent, "run": run}

    @app.task(bind=True, shared=False, name=REWARM_CHUNK_TASK, base=RewarmChunk)
    def rewarm_chunk(
        self: _Task,
        names: list[str],
        shard: str = "",
        run: str | None = None,
        index: int = 0,
    ) -> dict[str, int | float]:
        summary = _warm(self, names, shard, run)
        # Counted once whatever the tries; the task that completes the run sends its summary
        # (again, if a try sent it and died: only one summary task takes the totals).
        if run is not None and app.context.rewarm_runs.done(run, index, summary):
            summarize_rewarm.delay(run)
        return summary

    @app.task(bind=True, shared=False, name=REWARM_REPOSITORY_TASK, base=RetryOnTrouble)
    def rewarm_repository(
        self: _Task, name: str, shard: str = "", lock: str | None = None
    ) -> dict[str, int | float]:
        # The previous release's messages, queued across an upgrade: warmed, the lock of their
        # re-warm kept alive meanwhile; its summary is not written (the lock expires).
        return _warm(self, [name], shard, lock)

    def _warm(
        task: _Task, names: list[str], shard: str, lock: str | None
    ) -> dict[str, int | float]:
        shown = [0.0]

        def progress(summary: RewarmSummary) -> None:
            if time.monotonic() - shown[0] >= _SHOW_EVERY:  # Flower shows it; once a second
                shown[0] = time.monotonic()
                task.update_state(state="PROGRESS", meta=summary.as_dict())
                if lock is not None:
                    app.context.state.refresh_lock(REWARM_LOCK, lock, lock_ttl)

        if lock is not None:
            app.context.state.refresh_lock(REWARM_LOCK, lock, lock_ttl)
        return rewarm(
            app.context.service(),
            names,
            shard=shard,
            on_progress=progress,
            # Another try of this task may follow one that died between a write and its
            # re-check: the entries it left are hits now, so they are checked too.
            recheck_hits=another_try(task),
            # Deleted between the plan and this task: skipped, and the others warmed.
            skip_missing=True,
        ).as_dict()

    return rewarm_all


def _register_summary(app: WarmerCelery) -> _Task:
    """Register (and return) the fan-out re-warm's summary task: the totals of a complete run,
    written once, and its lock let go."""

    @app.task(bind=True, shared=False, name=REWARM_RUN_SUMMARY_TASK, base=RetryOnTrouble)
    def summarize_rewarm(self: _Task, run: str) -> dict[str, Any]:
        # Claimed by this task's id: its retry, should writing fail below, claims it again.
        totals = app.context.rewarm_runs.claim_summary(run, str(self.request.id))
        if totals is None:
            return {"skipped": "summarized already, or not complete"}
        try:
            summary: dict[str, Any] = {k: totals[k] for k in FIGURES}
            # The run's, planner to last task.
            summary["seconds"] = round(time.time() - totals["started"], 3)
            summary["tasks"] = totals["tasks"]
            app.context.state.record_last("rewarm", {**summary, "at": time.time()})
            if not summary["failed_tasks"]:
                # What the cache holds now is what the next look for an emptied cache compares
                # with; a run with failed tasks does not confirm a heal (its backoff goes on).
                note_cache_size(app.context.cache, app.context.state)
        finally:
            # Whatever fails here, the run is over: the lock goes (a retry writes the summary).
            app.context.state.release_lock(REWARM_LOCK, run)
        return summary

    return summarize_rewarm
