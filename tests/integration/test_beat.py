"""Celery beat with short schedules: stats, re-warm and reconcile results reach the result
backend, and a beat that starts on an empty cache re-warms at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

from bench.layout import LayoutWriter
from tests.support.redisdbs import DB, shared_env
from tests.support.results import task_metas
from tests.support.services import warmer_process
from worker.cli.processes import wait_until


def _results(state_redis: redis.Redis) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for meta in task_metas(state_redis):
        if meta.get("status") == "SUCCESS":
            found.setdefault(meta.get("name") or "", []).append(meta["result"])
    return found


def test_beat_runs_the_scheduled_jobs_and_their_results_are_kept(
    redis_proc: Any,
    layout: LayoutWriter,
    cache_redis: redis.Redis,
    state_redis: redis.Redis,
    tmp_path: Path,
) -> None:
    layout.image("team/app", "v1", b"a", b"b")
    broker = redis.Redis(host=redis_proc.host, port=redis_proc.port, db=DB.BEAT_BROKER)
    broker.flushdb()
    env = {
        **shared_env(redis_proc, broker=DB.BEAT_BROKER),
        "WARMER_STORAGE_ROOT": str(layout.store.root),
        "WARMER_STATS_INTERVAL": "1",
        "WARMER_REWARM_SCHEDULE": "3600",  # not within the test: the start-up one must do
        "WARMER_RECONCILE_SCHEDULE": "2",
    }
    worker = ["worker", "--pool", "solo", "--without-mingle", "--without-gossip"]
    beat = ["beat", "--schedule", str(tmp_path / "schedule")]
    with (
        warmer_process(worker, env, tmp_path / "worker.log"),
        warmer_process(beat, env, tmp_path / "beat.log"),
    ):

        def ran() -> bool:
            found = _results(state_redis)
            return len(found.get("warmer.stats", [])) >= 2 and all(
                name in found for name in ("warmer.rewarm_run_summary", "warmer.reconcile")
            )

        wait_until(ran, timeout=60, what="stats, re-warm and reconcile results")
    found = _results(state_redis)
    rewarmed = found["warmer.rewarm_run_summary"][0]
    assert (rewarmed["repositories"], rewarmed["blobs"], rewarmed["manifests"]) == (1, 3, 1)
    # Registry 3.x (the default) keeps the manifest as a member too: 3 blobs and 1 manifest.
    assert cache_redis.scard("repository::team/app::blobs") == 4
    snapshots = found["warmer.stats"]
    assert any("interval" in s for s in snapshots)
    assert found["warmer.reconcile"][0]["evicted_members"] == 0
    broker.flushdb()
