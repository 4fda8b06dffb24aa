"""The receiver's deploy hooks, built as ``warmer webhook`` builds them (``build_webhook``) on a
real Redis and a real storage tree: ``POST /warm`` hands a task an image to a real Celery
worker, ``GET /check`` answers what ``warmer check --json`` prints; the token, the bounds, the
400s with their reasons, the 404s and 503s."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from starlette.testclient import TestClient
from typer.testing import CliRunner

from bench.layout import LayoutWriter
from tasks import worker_app
from tests.support.redisdbs import DB, shared_env
from tests.support.redisdump import dump
from tests.support.registry import free_port
from worker.celeryapp import WarmerCelery
from worker.cli import app as cli
from worker.cli.processes import wait_until
from worker.config.settings import Settings, load_settings
from worker.receiver.assembly import build_webhook
from worker.receiver.images import DEFAULT_MAX_IMAGES, MAX_WARM_BODY

TOKEN = "deploy-hook-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
REPO = "shop/api"
HOST = "registry.example.com:5000"


def _settings(redis_proc: Any, layout: LayoutWriter, **more: Any) -> Settings:
    env = shared_env(redis_proc, broker=DB.IMAGES_BROKER)
    given = {
        "redis_url": env["WARMER_REDIS_URL"],
        "state_url": env["WARMER_STATE_URL"],
        "broker_url": env["WARMER_BROKER_URL"],
        "storage_root": str(layout.store.root),
        "webhook_token": TOKEN,
        "registry_hosts": HOST,
        "skip_eviction_check": True,
    }
    return load_settings(**(given | more))


@pytest.fixture
def settings(
    redis_proc: Any, layout: LayoutWriter, cache_redis: redis.Redis, state_redis: redis.Redis
) -> Iterator[Settings]:
    layout.store.root.mkdir(parents=True, exist_ok=True)
    broker = redis.Redis(host=redis_proc.host, port=redis_proc.port, db=DB.IMAGES_BROKER)
    broker.flushdb()
    yield _settings(redis_proc, layout)
    broker.flushdb()
    broker.close()


@pytest.fixture
def multi(layout: LayoutWriter) -> str:
    amd, _ = layout.image(REPO, "amd64", b"shared", b"amd64 layer")
    arm, _ = layout.image(REPO, "arm64", b"shared", b"arm64 layer")
    return layout.index(REPO, "2.4.1", ("linux/amd64", amd), ("linux/arm64", arm))


def _cli_check(settings: Settings, *refs: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["check", *refs, "--json"], env=settings.environment())
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def test_warm_then_check_with_a_real_worker(
    client: TestClient, celery: WarmerCelery, settings: Settings, multi: str
) -> None:
    cold = client.get("/check", params={"image": f"{REPO}:2.4.1"}, headers=AUTH)
    assert cold.status_code == 200
    assert cold.json()["warm"] is False
    assert cold.json() == _cli_check(settings, f"{REPO}:2.4.1")  # the same JSON as the CLI's

    body = {"images": [f"{HOST}/{REPO}:2.4.1", f"{REPO}:2.4.1", "shop/api:amd64"]}
    sent = client.post("/warm", json=body, headers=AUTH)
    assert sent.status_code == 202, sent.text
    tasks = sent.json()["tasks"]
    assert [t["image"] for t in tasks] == [f"{HOST}/{REPO}:2.4.1", "shop/api:amd64"]  # once each
    with start_worker(celery, pool="solo", perform_ping_check=False):
        done = [celery.AsyncResult(t["task_id"]).get(timeout=30) for t in tasks]
    assert done[0]["digest"] == multi

    def warm() -> bool:
        answer = client.get("/check", params={"image": f"{REPO}:2.4.1"}, headers=AUTH)
        return bool(answer.json()["warm"])

    wait_until(warm, timeout=10, what="/check to say warm")
    answer = client.get("/check", params={"image": f"{REPO}:2.4.1"}, headers=AUTH).json()
    assert answer == _cli_check(settings, f"{REPO}:2.4.1")
    assert [p["platform"] for p in answer["images"][0]["platforms"]] == [
        "linux/amd64",
        "linux/arm64",
    ]
    one = client.get(
        "/check", params={"image": f"{REPO}:2.4.1", "platform": "linux/arm64"}, headers=AUTH
    )
    assert [p["platform"] for p in one.json()["images"][0]["platforms"]] == ["linux/arm64"]


def test_a_platform_in_the_warm_body_is_handed_to_the_task(
    client: TestClient, celery: WarmerCelery, multi: str
) -> None:
    body = {"images": [f"{REPO}:2.4.1"], "platform": "linux/amd64"}
    (task,) = client.post("/warm", json=body, headers=AUTH).json()["tasks"]
    with start_worker(celery, pool="solo", perform_ping_check=False):
        assert celery.AsyncResult(task["task_id"]).get(timeout=30)["platforms"] == ["linux/amd64"]
    amd = client.get(
        "/check", params={"image": f"{REPO}:2.4.1", "platform": "linux/amd64"}, headers=AUTH
    )
    assert amd.json()["warm"] is True
    assert (
        client.get("/check", params={"image": f"{REPO}:2.4.1"}, headers=AUTH).json()["warm"]
        is False
    )


@pytest.mark.parametrize(
    "auth", [{}, {"authorization": "Bearer wrong"}, {"authorization": f"Token {TOKEN}"}]
)
def test_both_routes_want_the_token(
    client: TestClient, cache_redis: redis.Redis, multi: str, auth: dict[str, str]
) -> None:
    assert client.post("/warm", json={"images": [REPO]}, headers=auth).status_code == 401
    assert client.get("/check", params={"image": REPO}, headers=auth).status_code == 401
    assert dump(cache_redis) == {}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"not json", "not JSON"),
        (b"[]", "non-empty list"),
        (b'{"images": []}', "non-empty list"),
        (b'{"images": "shop/api:1"}', "non-empty list"),
        (b'{"images": [7]}', "reference string"),
        (b'{"images": ["shop/API:1"]}', "must be lowercase"),
        (b'{"images": ["docker.io/library/nginx:1"]}', "names registry docker.io"),
        (b'{"images": ["shop/api:1"], "platform": "linux"}', "invalid platform"),
        (b'{"images": ["shop/api:1"], "platform": 3}', "platform is a string"),
        (
            json.dumps({"images": ["a:1"] * (DEFAULT_MAX_IMAGES + 1)}).encode(),
            f"over {DEFAULT_MAX_IMAGES}",
        ),
    ],
)
def test_bad_warm_bodies_are_400_with_the_reason(
    client: TestClient, broker_length: Any, body: bytes, needle: str
) -> None:
    answer = client.post("/warm", content=body, headers=AUTH)
    assert answer.status_code == 400
    assert needle in answer.json()["error"]
    assert broker_length() == 0  # nothing sent


@pytest.fixture
def broker_length(redis_proc: Any, settings: Settings) -> Any:
    broker = redis.Redis(host=redis_proc.host, port=redis_proc.port, db=DB.IMAGES_BROKER)
    return lambda: sum(broker.llen(k) for k in broker.scan_iter() if broker.type(k) == b"list")


def test_a_body_over_the_bound_is_413_before_it_is_read(client: TestClient) -> None:
    big = b'{"images": ["' + b"a" * MAX_WARM_BODY + b'"]}'
    assert client.post("/warm", content=big, headers=AUTH).status_code == 413


@pytest.mark.parametrize(
    ("params", "status", "needle"),
    [
        ({}, 400, "give the image"),
        ({"image": "shop//api"}, 400, "invalid repository name"),
        ({"image": "quay.io/x/y:1"}, 400, "names registry quay.io"),
        ({"image": "x" * 2000}, 400, "over 1024"),
        ({"image": f"{REPO}:2.4.1", "platform": "linux/"}, 400, "invalid platform"),
        ({"image": f"{REPO}:9"}, 404, "no tag '9'"),
        ({"image": f"{REPO}@sha256:{'0' * 64}"}, 404, "not a revision"),
        ({"image": f"{REPO}:2.4.1", "platform": "linux/s390x"}, 404, "no platform linux/s390x"),
    ],
)
def test_check_says_what_is_wrong(
    client: TestClient, multi: str, params: dict[str, str], status: int, needle: str
) -> None:
    answer = client.get("/check", params=params, headers=AUTH)
    assert answer.status_code == status
    assert needle in answer.json()["error"]


def test_503_when_the_broker_the_cache_or_the_store_is_away(
    redis_proc: Any, layout: LayoutWriter, state_redis: redis.Redis, multi: str
) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"
    away = _settings(redis_proc, layout, broker_url=down, redis_url=down)
    with TestClient(build_webhook(away, worker_app(away))) as client:
        sent = client.post("/warm", json={"images": [REPO]}, headers=AUTH)
        assert (sent.status_code, sent.json()["error"]) == (
            503,
            "broker unavailable, send again later",
        )
        checked = client.get("/check", params={"image": f"{REPO}:2.4.1"}, headers=AUTH)
        assert checked.status_code == 503
        assert "could not check" in checked.json()["error"]
    unset = _settings(redis_proc, layout).model_copy(update={"storage_root": None})
    with TestClient(build_webhook(unset, worker_app(unset))) as client:
        checked = client.get("/check", params={"image": f"{REPO}:2.4.1"}, headers=AUTH)
        assert checked.status_code == 503
        assert "no storage configured" in checked.json()["error"]


def test_events_answer_as_before(client: TestClient) -> None:
    answer = client.post(
        "/events",
        content=b'{"events": []}',
        headers={**AUTH, "content-type": "application/json"},
    )
    assert answer.status_code == 202
    assert client.get("/warm").status_code == 405
    assert client.post("/check").status_code == 405
