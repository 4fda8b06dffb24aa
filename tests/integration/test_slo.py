"""SLO figures on a real Redis: push-to-warm in fixed buckets (clock skew clamped and counted),
the oldest pending event's age, images checked by verdict; and the same numbers through a real
receiver and worker in ``/metrics``, ``/debug/vars`` and ``warmer stats --json``."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from typer.testing import CliRunner

from bench.layout import LayoutWriter
from tests.support.apps import celery_app
from tests.support.notifications import envelope, event
from tests.support.redisdbs import DB
from worker.celeryapp import WarmerCelery
from worker.cli import app as cli
from worker.cli.processes import wait_until
from worker.receiver.assembly import build_webhook
from worker.registry.mediatypes import OCI_MANIFEST
from worker.state import StateStore
from worker.state.figures import oldest_pending_age
from worker.state.slo import BUCKETS, PUSH, TTL_SECONDS, VERDICTS

TOKEN = "slo-token"
AUTH = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
REPO = "shop/api"
D = "sha256:" + "d" * 64


def test_push_to_warm_buckets_clamp_clock_skew_and_estimate_percentiles(
    state: StateStore,
) -> None:
    # 0.03 s, 0.2 s twice, 4 s, two hours, and one the registry stamped 3 s in the future.
    assert state.slo.observe(PUSH, [0.03, 0.2, 0.2, 4.0, 7200.0, -3.0]) == 1
    histogram = state.slo.histograms()[PUSH]
    assert (histogram.count, histogram.clock_skew) == (6, 1)
    assert histogram.sum == pytest.approx(7204.43)  # the skewed one counts as 0, never -3
    cumulative = dict(zip(BUCKETS, histogram.cumulative, strict=True))
    assert (cumulative[0.05], cumulative[0.1], cumulative[0.25], cumulative[5.0]) == (2, 2, 4, 5)
    assert (cumulative[3600.0], cumulative[math.inf]) == (5, 6)
    # p50: rank 3 of 6 is half-way through (0.1, 0.25], which holds the 3rd and 4th.
    assert histogram.quantile(0.5) == pytest.approx(0.175)
    # p90: rank 5.4, in the last bucket (no upper bound): its lower bound, the largest finite.
    assert histogram.quantile(0.9) == 3600.0
    assert histogram.summary() == {
        "count": 6,
        "sum": 7204.43,
        "clock_skew": 1,
        "p50": 0.175,
        "p90": 3600.0,
        "p99": 3600.0,
    }


def test_an_implausible_push_time_measures_nothing(state: StateStore) -> None:
    # A pushed_at over 30 days before the warm, or over an hour after it (a registry's clock
    # or a Harbor occur_at far off), is no push-to-warm: left out, not a huge or skewed sample.
    month = 30 * 86_400
    assert state.slo.observe(PUSH, [month + 1, -3601.0, 1e300, -1e300, month, -3600.0]) == 1
    histogram = state.slo.histograms()[PUSH]
    assert (histogram.count, histogram.clock_skew) == (2, 1)
    assert histogram.sum == month


def test_no_observation_gives_no_percentile(state: StateStore) -> None:
    histogram = state.slo.histograms()[PUSH]
    assert histogram.count == 0
    assert histogram.summary()["p99"] is None
    assert state.slo.images() == dict.fromkeys(VERDICTS, 0)


def test_the_slo_hash_keeps_its_fixed_fields_and_expires(
    state: StateStore, state_redis: redis.Redis
) -> None:
    chance = random.Random(24)
    # Every bucket gets some (its bound is in it), and more.
    durations = [chance.uniform(-60, 7200) for _ in range(5000)] + [*BUCKETS[:-1], math.nan, 86400]
    state.slo.observe(PUSH, durations)
    state.slo.count_images({"warm": 3, "cold": 2, "stale": 1, "missing": 1})
    (key,) = state_redis.keys("warmer:slo*")
    # Buckets, count, sum and clock skew of each kind, and the verdicts: never more.
    assert state_redis.hlen(key) == len(BUCKETS) + 3 + len(VERDICTS)
    assert 0 < state_redis.ttl(key) <= TTL_SECONDS
    assert state.slo.histograms()[PUSH].count == 5016  # NaN is no duration: left out (a day: +Inf)
    with pytest.raises(ValueError, match="unknown push-to-warm kind"):
        state.slo.observe("pull", [1.0])  # a label is a fixed set, never what an event says
    with pytest.raises(ValueError, match="unknown verdicts"):
        state.slo.count_images({"lukewarm": 1})


def test_the_oldest_pending_event_is_the_first_accepted_until_a_task_settles_it(
    state: StateStore,
) -> None:
    first = ["a", "warm-blob", REPO, D]
    second = ["b", "warm-blob", REPO, D]
    assert state.oldest_pending() is None
    before = time.time()
    assert state.admit(["a"], [first], due=1e12) == [True]
    accepted = state.oldest_pending()
    assert accepted is not None
    assert before <= accepted <= time.time()
    wait_until(lambda: time.time() > accepted + 0.01, timeout=5, what="the clock to move on")
    state.admit(["b"], [second], due=1e12)
    # Sent again and tried again, it is as old as when it was accepted.
    state.reschedule([first], lambda _: 1e12)
    state.track([first], 1e12)
    assert state.oldest_pending() == accepted
    assert oldest_pending_age(state, accepted + 5) == pytest.approx(5)
    assert oldest_pending_age(state, accepted - 5) == 0  # another clock a little behind
    state.untrack([first])
    later = state.oldest_pending()
    assert later is not None
    assert later > accepted
    state.untrack([second])
    assert state.oldest_pending() is None
    assert oldest_pending_age(state, time.time()) == 0


def test_a_since_entry_left_without_its_ledger_entry_heals(
    state: StateStore, state_redis: redis.Redis
) -> None:
    # What a crash between two writes used to leave: accepted, yet in no ledger. Its age grew
    # for ever (WarmerEventsPilingUp firing for ever); the oldest pending heals it away.
    state_redis.zadd("warmer:pending:since", {f'["lost{i}"]': i for i in range(3)})
    assert state.oldest_pending() is None
    assert state_redis.zcard("warmer:pending:since") == 0
    state_redis.zadd("warmer:pending:since", {'["lost"]': 1})
    state.admit(["a"], [["a", "warm-blob", REPO, D]], due=1e12)
    accepted = state.oldest_pending()
    assert accepted is not None
    assert accepted > 1
    state.reschedule([["b", "warm-blob", REPO, D]], lambda _: 1e12)  # both keys, or neither
    assert state.pending_count() == state_redis.zcard("warmer:pending:since") == 2


@pytest.fixture
def slo_app(
    redis_proc: Any, layout: LayoutWriter, cache_redis: redis.Redis, state_redis: redis.Redis
) -> Iterator[tuple[WarmerCelery, dict[str, str]]]:
    with celery_app(redis_proc, layout, broker=DB.SLO_BROKER, token=TOKEN) as pair:
        yield pair


def _stamp(at: float) -> str:
    # As the registry writes it: RFC 3339, nanoseconds, UTC.
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_push_through_the_receiver_and_a_worker_is_observed_in_every_window(
    slo_app: tuple[WarmerCelery, dict[str, str]],
    layout: LayoutWriter,
    state: StateStore,
    cache_redis: redis.Redis,
) -> None:
    app, env = slo_app
    manifest, blobs = layout.image(REPO, "v1", b"base layer", b"app layer")
    pushed = [
        event("push", REPO, manifest, media_type=OCI_MANIFEST, tag="v1"),
        # The registry's clock an hour ahead of the worker's: clamped to 0 and counted.
        event("push", REPO, manifest, media_type=OCI_MANIFEST),
        event("push", REPO, blobs[0]),  # a blob push: no image yet, not observed
    ]
    pushed[0]["timestamp"] = _stamp(time.time() - 2)
    pushed[1]["timestamp"] = _stamp(time.time() + 3600)
    with (
        start_worker(app, pool="solo", perform_ping_check=False),
        TestClient(build_webhook(app.settings, app)) as client,
    ):
        response = client.post("/events", content=envelope(*pushed), headers=AUTH)
        assert response.status_code == 202, response.text
        wait_until(lambda: state.pending_count() == 0, timeout=30, what="the pushes settled")
        metrics = _samples(client.get("/metrics").text)
        debug = client.get("/debug/vars").json()["warmer"]
        stats = CliRunner().invoke(cli, ["stats", "--json"], env=env)
        table = CliRunner().invoke(cli, ["stats"], env={**env, "COLUMNS": "200"})
        # The deploy hook's check, warm; then the CLI's, cold once the cache is emptied.
        assert client.get("/check", params={"image": f"{REPO}:v1"}, headers=AUTH).json()["warm"]
        cache_redis.flushdb()
        cold = CliRunner().invoke(cli, ["check", f"{REPO}:v1", "--json"], env=env)
        assert cold.exit_code == 1, cold.stderr
        checked = _samples(client.get("/metrics").text)
    push = (("kind", "push"),)
    assert metrics[("warmer_push_to_warm_seconds_count", push)] == 2
    assert metrics[("warmer_push_to_warm_seconds_bucket", (*push, ("le", "0.05")))] == 1
    # The other took about 2 s from its push (the registry's timestamp) to warm.
    assert metrics[("warmer_push_to_warm_seconds_bucket", (*push, ("le", "1.0")))] == 1
    assert metrics[("warmer_push_to_warm_seconds_bucket", (*push, ("le", "5.0")))] == 2
    assert 2 <= metrics[("warmer_push_to_warm_seconds_sum", push)] < 5
    assert metrics[("warmer_clock_skew_events_total", push)] == 1
    assert metrics[("warmer_oldest_pending_event_seconds", ())] == 0
    assert stats.exit_code == 0, stats.stderr
    view = json.loads(stats.stdout.strip().splitlines()[-1])
    for window in (debug, view):
        latency = window["push_to_warm"]["push"]
        assert (latency["count"], latency["clock_skew"]) == (2, 1)
        assert 0 < latency["p50"] <= 0.05 < latency["p90"] <= latency["p99"] <= 5.0
        assert window["oldest_pending_event_seconds"] == 0
    assert table.exit_code == 0, table.stderr
    assert "push to warm: p50, p90, p99 (s, estimated), count" in table.stdout
    assert "oldest pending event seconds" in table.stdout
    for verdict, count in {"warm": 1, "cold": 1, "stale": 0, "missing": 0}.items():
        assert checked[("warmer_images_checked_total", (("verdict", verdict),))] == count
