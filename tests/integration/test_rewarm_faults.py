"""The fan-out re-warm when one of its tasks fails: whatever fails, the run is summarized once
and its lock let go, or a retry of the same task does it (else the lock blocks every re-warm
until its TTL). Also the planner's own edges (an empty store, a retried planner) and the
previous release's chunk task, which queued messages still name.

Real Redis, a real store on disk, and a real Celery worker (solo, on the Redis broker).
"""

from __future__ import annotations

from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker

import tasks.jobs
from bench.layout import LayoutWriter
from tests.integration import test_rewarm_fanout
from tests.support.results import task_metas
from worker.celeryapp import WarmerCelery
from worker.celeryapp.names import REWARM_TASK
from worker.cli.processes import wait_until
from worker.core.fanout import plan
from worker.core.heal import REWARM_LOCK
from worker.core.rewarm import rewarm
from worker.errors import StateError, StoreUnavailableError
from worker.state import StateStore

#: The fan-out tests' app (its own queue), and their store of small repositories.
app = test_rewarm_fanout.app
_small_repositories = test_rewarm_fanout._small_repositories

#: The names the previous release's messages carry, and the summary's of this release.
_OLD_CHUNK = "warmer.rewarm_repository"
_OLD_SUMMARY = "warmer.rewarm_summary"
_RUN_SUMMARY = "warmer.rewarm_run_summary"


class _RecordFailsOnce(StateStore):
    """The state Redis away a moment as the summary is written: one StateError, then fine."""

    failed = False

    def record_last(self, job: str, summary: Any) -> None:
        if job == "rewarm" and not self.failed:
            self.failed = True
            raise StateError("state Redis: connection lost")
        super().record_last(job, summary)


def _finished(state: StateStore, timeout: float = 30) -> dict[str, Any]:
    last = wait_until(lambda: state.last("rewarm"), timeout=timeout, what="the summary")
    wait_until(lambda: state.lock_holder(REWARM_LOCK) is None, timeout=10, what="the lock")
    assert isinstance(last, dict)
    return last


def _one_a_chunk(store: Any, recently_pulled: list[str]) -> Any:
    return plan(store, recently_pulled, repositories=1)


def test_a_summary_that_fails_after_its_claim_is_written_by_its_retry(
    app: WarmerCelery, layout: LayoutWriter, state_redis: redis.Redis
) -> None:
    _small_repositories(layout, 3)
    flaky = _RecordFailsOnce(state_redis)
    app.context._state = flaky
    with start_worker(app, pool="solo", perform_ping_check=False):
        app.send_task(REWARM_TASK)
        last = _finished(flaky)
    assert flaky.failed, "record_last never failed"
    assert (last["repositories"], last["tasks"]) == (3, 1), last


def test_a_chunk_that_fails_for_good_is_counted_failed_and_the_run_summarized(
    app: WarmerCelery,
    layout: LayoutWriter,
    state: StateStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = _small_repositories(layout, 3)
    monkeypatch.setattr(tasks.jobs, "plan", _one_a_chunk)  # three tasks

    def breaks_on_one(service: Any, repositories: list[str], **kwargs: Any) -> Any:
        if repositories == [names[1]]:
            raise ValueError("a bug: no retry helps")
        return rewarm(service, repositories, **kwargs)

    monkeypatch.setattr(tasks.jobs, "rewarm", breaks_on_one)
    with start_worker(app, pool="solo", perform_ping_check=False):
        app.send_task(REWARM_TASK)
        last = _finished(state)
    assert (last["failed_tasks"], last["repositories"], last["tasks"]) == (1, 2, 3), last


def test_the_planner_run_twice_under_one_id_is_one_run(
    app: WarmerCelery, layout: LayoutWriter, state: StateStore, state_redis: redis.Redis
) -> None:
    _small_repositories(layout, 1500)  # two chunks
    # A redelivered planner: the same message (id) twice, the first try's chunks sent already.
    first = app.tasks[REWARM_TASK].apply(task_id="planner-1").get()
    again = app.tasks[REWARM_TASK].apply(task_id="planner-1").get()
    assert first == again == {"tasks": 2, "run": "planner-1"}, (first, again)
    with start_worker(app, pool="solo", perform_ping_check=False):
        last = _finished(state)
        wait_until(
            lambda: len([m for m in task_metas(state_redis) if m.get("name") == _RUN_SUMMARY]) >= 1,
            timeout=10,
            what="the summary task's result",
        )
    assert (last["repositories"], last["tasks"]) == (1500, 2), last
    written = [
        m["result"]
        for m in task_metas(state_redis)
        if m.get("name") == _RUN_SUMMARY and "tasks" in (m.get("result") or {})
    ]
    assert len(written) == 1, written


def test_a_planner_retried_mid_plan_resumes_its_run_and_keeps_the_lock(
    app: WarmerCelery,
    layout: LayoutWriter,
    state: StateStore,
    state_redis: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _small_repositories(layout, 3)
    broke: list[bool] = []

    def breaks_after_one(store: Any, recently_pulled: list[str]) -> Any:
        for i, chunk in enumerate(_one_a_chunk(store, recently_pulled)):
            if i == 1 and not broke:  # the storage away after the first chunk was sent
                broke.append(True)
                raise StoreUnavailableError("the storage went away")
            yield chunk

    monkeypatch.setattr(tasks.jobs, "plan", breaks_after_one)
    with start_worker(app, pool="solo", perform_ping_check=False):
        planner = app.send_task(REWARM_TASK)
        assert planner.get(timeout=30) == {"tasks": 3, "run": planner.id}
        last = _finished(state)
    assert broke
    assert (last["repositories"], last["tasks"]) == (3, 3), last
    assert list(state_redis.scan_iter("warmer:rewarm:*")) == [
        f"warmer:rewarm:{planner.id}".encode()
    ]
    # The planner keeps no chunk's result: a million links are 200 of them.
    meta = next(m for m in task_metas(state_redis) if m.get("task_id") == planner.id)
    assert not meta.get("children"), meta


def test_an_empty_store_is_summarized_by_the_planner(app: WarmerCelery, state: StateStore) -> None:
    with start_worker(app, pool="solo", perform_ping_check=False):
        planned = app.send_task(REWARM_TASK).get(timeout=30)
        last = _finished(state)
    assert planned["tasks"] == 0, planned
    assert (last["repositories"], last["tasks"], last["failed_tasks"]) == (0, 0, 0), last


def test_the_previous_release_chunk_task_still_runs(
    app: WarmerCelery,
    layout: LayoutWriter,
    state: StateStore,
    state_redis: redis.Redis,
    cache_redis: redis.Redis,
) -> None:
    # Its summary's signature changed: the new one has a name of its own.
    assert _RUN_SUMMARY in app.tasks
    assert _OLD_SUMMARY not in app.tasks
    names = _small_repositories(layout, 2)
    assert state.acquire_lock(REWARM_LOCK, "old-run", 5)
    with start_worker(app, pool="solo", perform_ping_check=False):
        warmed = app.send_task(_OLD_CHUNK, args=[names[0], ""], kwargs={"lock": "old-run"})
        gone = app.send_task(_OLD_CHUNK, args=["org0/gone"])
        assert warmed.get(timeout=20)["repositories"] == 1
        assert gone.get(timeout=20)["skipped"] == 1
    assert cache_redis.scard(f"repository::{names[0]}::blobs") == 1
    assert state.lock_holder(REWARM_LOCK) == "old-run"
    # Refreshed for WARMER_REWARM_LOCK_TTL (it was taken for 5 s).
    assert state_redis.pttl(f"warmer:lock:{REWARM_LOCK}") > 5_000
