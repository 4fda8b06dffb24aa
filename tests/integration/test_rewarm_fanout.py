"""The fan-out re-warm (``warmer.rewarm``): few tasks for many small repositories, sent as the
store is walked; the last task's summary written once, its lock let go once.

Real Redis, a real store on disk, and a real Celery worker (solo, on the Redis broker).
"""

from __future__ import annotations

import gc
import shutil
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker

import tasks.jobs
from bench.layout import LayoutWriter
from tasks import worker_app
from tests.support.redisdbs import DB
from tests.support.results import task_metas
from worker.celeryapp import WarmerCelery
from worker.celeryapp.names import REWARM_RUN_SUMMARY_TASK, REWARM_TASK
from worker.cli.processes import wait_until
from worker.cli.stats import stats_table, stats_view
from worker.config.settings import load_settings
from worker.core.fanout import plan
from worker.core.heal import REWARM_LOCK
from worker.core.rewarm import rewarm
from worker.errors import CacheError
from worker.state import StateStore
from worker.state.rewarmruns import RewarmRuns
from worker.storage import paths
from worker.storage.filesystem import FilesystemStore


@pytest.fixture
def app(
    redis_proc: Any, layout: LayoutWriter, cache_redis: redis.Redis, state_redis: redis.Redis
) -> Iterator[WarmerCelery]:
    layout.store.root.mkdir(parents=True, exist_ok=True)
    base = f"redis://{redis_proc.host}:{redis_proc.port}"
    settings = load_settings(
        redis_url=f"{base}/{DB.CACHE}",
        state_url=f"{base}/{DB.STATE}",
        broker_url=f"{base}/{DB.BROKER}",
        storage_root=str(layout.store.root),
    )
    app = worker_app(settings)
    app.conf.task_default_queue = f"warmer-fanout-{uuid.uuid4().hex[:8]}"
    app.conf.worker_hijack_root_logger = False
    yield app
    gc.collect()  # task results in reference cycles unsubscribe now, while Redis answers


def _small_repositories(layout: LayoutWriter, count: int) -> list[str]:
    """``count`` repositories of one link each, over a few shared blobs; their names."""
    blobs = [layout.blob(f"shared {i}".encode()) for i in range(7)]
    names = [f"org{i % 10}/app{i}" for i in range(count)]
    for i, name in enumerate(names):
        layout.link(name, blobs[i % len(blobs)])
    return names


def _summaries(state_redis: redis.Redis) -> list[dict[str, Any]]:
    return [
        m["result"]
        for m in task_metas(state_redis)
        if m.get("name") == REWARM_RUN_SUMMARY_TASK and m.get("status") == "SUCCESS"
    ]


def _chunks_done(state_redis: redis.Redis) -> list[dict[str, Any]]:
    return [
        m["result"]
        for m in task_metas(state_redis)
        if m.get("name") == "warmer.rewarm_chunk" and m.get("status") == "SUCCESS"
    ]


def test_many_small_repositories_are_warmed_by_a_few_tasks(
    app: WarmerCelery, layout: LayoutWriter, cache_redis: redis.Redis, state: StateStore
) -> None:
    # 1,200 repositories of a link: a task a repository was 1,200 tasks; at most 1,000
    # repositories a chunk, they are 2.
    names = _small_repositories(layout, 1200)
    with start_worker(app, pool="solo", perform_ping_check=False):
        planned = app.send_task(REWARM_TASK).get(timeout=60)
        assert planned["tasks"] == 2, planned
        last = wait_until(lambda: state.last("rewarm"), timeout=60, what="the summary")
        wait_until(lambda: state.lock_holder(REWARM_LOCK) is None, timeout=10, what="the lock")
    assert (last["repositories"], last["blobs"], last["skipped"]) == (1200, 1200, 0), last
    assert last["tasks"] == 2
    assert all(cache_redis.scard(f"repository::{name}::blobs") == 1 for name in names)


def test_a_repository_deleted_between_plan_and_task_is_skipped_and_the_rest_warmed(
    app: WarmerCelery, layout: LayoutWriter, cache_redis: redis.Redis, state: StateStore
) -> None:
    names = _small_repositories(layout, 5)
    gone = names[2]
    # Planned here (no worker yet: the chunk waits in the queue), then deleted.
    planned = app.tasks[REWARM_TASK].apply().get()
    assert planned["tasks"] == 1, planned  # the five share one task
    shutil.rmtree(layout.store.os_path(paths.repository(gone)))
    with start_worker(app, pool="solo", perform_ping_check=False):
        last = wait_until(lambda: state.last("rewarm"), timeout=60, what="the summary")
        wait_until(lambda: state.lock_holder(REWARM_LOCK) is None, timeout=10, what="the lock")
    assert (last["repositories"], last["skipped"], last["blobs"]) == (4, 1, 4), last
    kept = [name for name in names if name != gone]
    assert all(cache_redis.scard(f"repository::{name}::blobs") == 1 for name in kept)
    assert not cache_redis.exists(f"repository::{gone}::blobs")


def test_a_retried_or_redelivered_task_counts_once_and_the_summary_is_written_once(
    app: WarmerCelery,
    layout: LayoutWriter,
    state: StateStore,
    state_redis: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = _small_repositories(layout, 4)

    def one_a_chunk(store: Any, recently_pulled: list[str]) -> Any:
        return plan(store, recently_pulled, repositories=1)

    monkeypatch.setattr(tasks.jobs, "plan", one_a_chunk)  # four tasks, not one
    failed: list[bool] = []

    def fails_once(service: Any, repositories: list[str], **kwargs: Any) -> Any:
        if repositories == [names[1]] and not failed:  # Redis away a moment: tried again
            failed.append(True)
            raise CacheError("the cache Redis went away")
        return rewarm(service, repositories, **kwargs)

    monkeypatch.setattr(tasks.jobs, "rewarm", fails_once)
    planned = app.tasks[REWARM_TASK].apply().get()
    assert planned["tasks"] == 4, planned
    # The first chunk's message again, as the broker hands out one whose worker died after
    # the task ran and before it acknowledged it.
    chunks = list(one_a_chunk(app.context.store, state.recently_pulled()))
    first = {"run": planned["run"], "index": 0}
    app.send_task("warmer.rewarm_chunk", args=[chunks[0].names, ""], kwargs=first)
    with start_worker(app, pool="solo", perform_ping_check=False):
        wait_until(
            lambda: (
                len(_chunks_done(state_redis)) == 5
                and any("tasks" in s for s in _summaries(state_redis))
                and state.lock_holder(REWARM_LOCK) is None
            ),
            timeout=60,
            what="the five chunk tasks, the summary and the lock let go",
        )
    assert failed, "the retried task never failed"
    written = [s for s in _summaries(state_redis) if "tasks" in s]  # not "summarized already"
    assert len(written) == 1, _summaries(state_redis)
    last = state.last("rewarm")
    assert last is not None
    assert (last["repositories"], last["blobs"], last["tasks"]) == (4, 4, 4), last


def test_planning_holds_a_chunk_not_the_store(tmp_path: Path) -> None:
    peaks = []
    for count in (2000, 6000):  # a chunk (1,000 names) is cut while the caller holds the last
        layout = LayoutWriter(tmp_path / f"root{count}")
        _small_repositories(layout, count)
        store = FilesystemStore(layout.store.root)
        tracemalloc.start()
        try:
            chunks = sum(1 for _ in plan(store, []))
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert chunks == count // 1000
    # Three times the repositories: the planner's peak may not grow with them.
    assert peaks[1] < peaks[0] * 1.5, peaks


def test_a_run_counts_each_task_once_and_is_complete_once_planned_and_done(
    state_redis: redis.Redis,
) -> None:
    runs = RewarmRuns(state_redis)
    runs.start("r", 1000.0)
    runs.sent("r", 2)
    assert not runs.done("r", 0, {"blobs": 3, "repositories": 1})
    assert not runs.done("r", 0, {"blobs": 3, "repositories": 1})  # again: not counted
    assert not runs.done("r", 1, {"blobs": 2, "repositories": 1})  # all done, not planned yet
    assert runs.claim_summary("r", "summary-1") is None
    assert runs.planned("r", 2)  # planned last: the planner sends the summary
    totals = runs.claim_summary("r", "summary-1")
    assert totals is not None
    assert (totals["blobs"], totals["repositories"], totals["tasks"]) == (5, 2, 2)
    assert runs.claim_summary("r", "summary-2") is None  # once
    assert runs.claim_summary("r", "summary-1") == totals  # but to the claimer's retry again
    assert 0 < state_redis.ttl("warmer:rewarm:r") <= 86_400


def test_warmer_stats_shows_the_run_under_way(state: StateStore, state_redis: redis.Redis) -> None:
    runs = RewarmRuns(state_redis)
    assert stats_view(state, runs)["rewarm_running"] is None
    assert state.acquire_lock(REWARM_LOCK, "run-1", 30)  # a run's token names its record
    runs.start("run-1", 1000.0)
    runs.sent("run-1", 7)
    runs.done("run-1", 0, {"blobs": 40, "repositories": 3})
    view = stats_view(state, runs)
    running = view["rewarm_running"]
    assert (running["tasks"], running["done"], running["blobs"]) == (7, 1, 40), running
    assert not running["planned"]
    stats_table(view)  # the terminal's table takes it
