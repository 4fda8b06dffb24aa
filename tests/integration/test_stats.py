"""Figures: recorded per task, snapshotted, and the same through every window onto them."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from starlette.testclient import TestClient
from typer.testing import CliRunner

from bench.layout import LayoutWriter
from tests.support.apps import celery_app
from tests.support.notifications import envelope, event
from tests.support.redisdbs import DB
from tests.support.redisdump import dump
from worker.celeryapp import WarmerCelery
from worker.celeryapp.names import REWARM_TASK
from worker.cli import app as cli
from worker.cli.processes import wait_until
from worker.core.blobservice import CachedBlobService
from worker.core.pipeline import process
from worker.core.rewarm import rewarm
from worker.receiver.assembly import build_webhook
from worker.registry.events import Event, Kind
from worker.state import StateStore
from worker.state.figures import SNAPSHOTS_KEPT, read, record, take_snapshot

TOKEN = "stats-token"


def test_a_task_adds_its_figures_in_all_and_per_repository(
    service: CachedBlobService, layout: LayoutWriter, state: StateStore
) -> None:
    a, b = layout.blob(b"a"), layout.blob(b"b")
    layout.link("one", a)
    layout.link("two", b)
    events = [
        Event("1", Kind.WARM_BLOB, "one", a),
        Event("2", Kind.WARM_BLOB, "one", a),
        Event("3", Kind.WARM_BLOB, "two", b),
    ]
    result = process(events, service, state)
    result.figures.dead_lettered = 1
    record(state, result.figures, result.repositories)
    totals = read(state).flat()
    assert (totals["fetch.requests"], totals["fetch.hits"], totals["fetch.misses"]) == (3, 1, 2)
    assert (totals["warmed"], totals["dead_lettered"]) == (3, 1)
    one = read(state, "one").flat()
    assert (one["fetch.requests"], one["fetch.hits"], one["warmed"]) == (2, 1, 2)
    assert read(state, "two").fetch.requests == 1


def test_snapshots_give_interval_rates_and_keep_a_day(state: StateStore) -> None:
    first = take_snapshot(state, now=1000.0)
    assert "interval" not in first
    state.add_figures({"fetch.requests": 10, "fetch.hits": 8, "fetch.misses": 2}, {})
    second = take_snapshot(state, now=1010.0)
    assert second["interval"]["delta"]["fetch.requests"] == 10
    assert second["interval"]["per_second"]["fetch.requests"] == 1.0
    assert second["interval"]["hit_ratio"] == 0.8
    for i in range(SNAPSHOTS_KEPT + 5):
        state.push_snapshot({"at": i}, SNAPSHOTS_KEPT)
    assert len(state.snapshots(SNAPSHOTS_KEPT + 10)) == SNAPSHOTS_KEPT


@pytest.fixture
def pipeline_app(
    redis_proc: Any, layout: LayoutWriter, cache_redis: redis.Redis, state_redis: redis.Redis
) -> Iterator[tuple[WarmerCelery, dict[str, str]]]:
    with celery_app(redis_proc, layout, broker=DB.STATS_BROKER, token=TOKEN) as pair:
        yield pair


def _metric(text: str, name: str, operation: str) -> int:
    found = re.search(rf'^{name}_total\{{operation="{operation}"\}} (\S+)$', text, re.MULTILINE)
    assert found is not None, text
    return int(float(found[1]))


def test_stats_json_debug_vars_and_metrics_agree_with_the_operations_run(
    pipeline_app: tuple[WarmerCelery, dict[str, str]],
    layout: LayoutWriter,
    state: StateStore,
) -> None:
    app, env = pipeline_app
    a, b = layout.blob(b"blob a"), layout.blob(b"blob b")
    for d in (a, b):
        layout.link("team/app", d)
    # Cold A, A again, cold B, A again: 4 fetches, 2 hits, 2 misses.
    pushes = [a, a, b, a]
    with (
        start_worker(app, pool="solo", perform_ping_check=False),
        TestClient(build_webhook(app.settings, app)) as client,
    ):
        for digest in pushes:
            response = client.post(
                "/events",
                content=envelope(event("push", "team/app", digest)),
                headers={"content-type": "application/json", "authorization": f"Bearer {TOKEN}"},
            )
            assert response.status_code == 202
            wait_until(lambda: state.pending_count() == 0, timeout=30, what="the push settled")
        expected = {"requests": 4, "hits": 2, "misses": 2}
        as_json = CliRunner().invoke(cli, ["stats", "--json"], env=env)
        assert as_json.exit_code == 0, as_json.stderr
        view = json.loads(as_json.stdout.strip().splitlines()[-1])
        debug = client.get("/debug/vars").json()
        metrics = client.get("/metrics").text
    assert view["fetch"] == expected
    assert view["warmed"] == 4
    assert debug["registry"]["cache"]["storage"]["layerinfo"]["Fetch"] == {
        "Requests": 4,
        "Hits": 2,
        "Misses": 2,
    }
    assert {k: _metric(metrics, f"warmer_cache_{k}", "fetch") for k in expected} == expected
    assert _metric(metrics, "warmer_cache_requests", "exists") == 0


def test_the_fanned_out_rewarm_equals_the_in_process_one(
    pipeline_app: tuple[WarmerCelery, dict[str, str]],
    layout: LayoutWriter,
    cache_redis: redis.Redis,
    state: StateStore,
    tmp_path: Path,
) -> None:
    app, _ = pipeline_app
    layout.image("team/app", "v1", b"shared", b"a")
    layout.image("other/app", "v1", b"shared", b"b")
    state.record_access(["other/app"])
    with start_worker(app, pool="solo", perform_ping_check=False):
        app.send_task(REWARM_TASK).get(timeout=30)
        wait_until(lambda: state.last("rewarm") is not None, timeout=30, what="the summary")
    fanned = state.last("rewarm")
    assert fanned is not None
    warmed = dump(cache_redis)
    cache_redis.flushdb()
    in_process = rewarm(CachedBlobService(app.context.service().cache, layout.store))
    assert warmed == dump(cache_redis)
    for key in ("repositories", "blobs", "manifests", "misses", "errors"):
        assert fanned[key] == in_process.as_dict()[key], key
    assert time.time() - fanned["at"] < 60
