"""Harbor's project webhooks at ``POST /harbor``, both formats, sent as Harbor sends them (its
"Auth Header" as ``Authorization``, ``application/json`` or ``application/cloudevents+json``) to
the receiver ``warmer webhook`` builds (``build_webhook``), a real Celery worker, a real Redis and
a real storage tree: a push warms the image (every platform of an index) through the event
pipeline, a delete forgets what the registry's manifest delete forgets, a pull counts as a
pull; other types, other registries and malformed payloads are answered, never with a 5xx.

The payloads are tests/data/harbor-*.json (their origins: tests/data/harbor-fixtures.md), with
the digests, repository and host of the images built here."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from starlette.testclient import TestClient

from bench.layout import LayoutWriter
from tests.support.redisdbs import DB, shared_env
from tests.support.redisdump import dump
from worker.celeryapp import WarmerCelery
from worker.cli.processes import wait_until
from worker.config.settings import Settings, load_settings
from worker.state import StateStore
from worker.storage import paths

TOKEN = "harbor-auth-header-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
JSON = {"content-type": "application/json"}
CLOUDEVENTS = {"content-type": "application/cloudevents+json"}
HOST = "harbor.example.com"
REPO = "library/app"
DATA = Path(__file__).resolve().parents[1] / "data"


def payload(name: str, repository: str, digest: str, tag: str | None = None) -> dict[str, Any]:
    """The fixture ``harbor-<name>.json`` about ``repository``'s artifact ``digest``: pushed by
    ``tag``, or by digest (then ``tag`` is the digest, as Harbor writes it)."""
    doc: dict[str, Any] = json.loads((DATA / f"harbor-{name}.json").read_text())
    data = doc["data" if "specversion" in doc else "event_data"]
    reference = f":{tag}" if tag else f"@{digest}"
    data["resources"] = [
        {"digest": digest, "tag": tag or digest, "resource_url": f"{HOST}/{repository}{reference}"}
    ]
    namespace, _, name_ = repository.partition("/")
    data["repository"] |= {"name": name_, "namespace": namespace, "repo_full_name": repository}
    return doc


def post(client: TestClient, doc: Any, headers: dict[str, str] | None = None) -> Any:
    kind = CLOUDEVENTS if isinstance(doc, dict) and "specversion" in doc else JSON
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return client.post("/harbor", content=body, headers=AUTH | kind | (headers or {}))


@pytest.fixture
def settings(
    redis_proc: Any, layout: LayoutWriter, cache_redis: redis.Redis, state_redis: redis.Redis
) -> Iterator[Settings]:
    layout.store.root.mkdir(parents=True, exist_ok=True)
    broker = redis.Redis(host=redis_proc.host, port=redis_proc.port, db=DB.HARBOR_BROKER)
    broker.flushdb()
    env = shared_env(redis_proc, broker=DB.HARBOR_BROKER)
    yield load_settings(
        redis_url=env["WARMER_REDIS_URL"],
        state_url=env["WARMER_STATE_URL"],
        broker_url=env["WARMER_BROKER_URL"],
        storage_root=str(layout.store.root),
        webhook_token=TOKEN,
        registry_hosts=HOST,
        skip_eviction_check=True,
    )
    broker.flushdb()
    broker.close()


@pytest.fixture
def multi(layout: LayoutWriter) -> tuple[str, list[str]]:
    """An index of two platforms in REPO, tagged 2.4.1: its digest and every blob of it."""
    amd, amd_blobs = layout.image(REPO, "amd64", b"shared", b"amd64 layer")
    arm, arm_blobs = layout.image(REPO, "arm64", b"shared", b"arm64 layer")
    index = layout.index(REPO, "2.4.1", ("linux/amd64", amd), ("linux/arm64", arm))
    return index, sorted({*amd_blobs, *arm_blobs, amd, arm})


def members(cache: redis.Redis, repository: str) -> set[str]:
    key = f"repository::{repository}::blobs"
    return {m.decode() if isinstance(m, bytes) else m for m in cache.smembers(key)}


def warm(client: TestClient, reference: str) -> bool:
    answer = client.get("/check", params={"image": reference}, headers=AUTH)
    return bool(answer.json()["warm"])


@pytest.mark.parametrize("fmt", ["default", "cloudevents"])
def test_a_push_warms_every_platform_and_a_delete_forgets_it(
    client: TestClient,
    celery: WarmerCelery,
    cache_redis: redis.Redis,
    multi: tuple[str, list[str]],
    layout: LayoutWriter,
    fmt: str,
) -> None:
    index, blobs = multi
    pushed = post(client, payload(f"push-{fmt}", REPO, index, "2.4.1"))
    assert pushed.status_code == 202, pushed.text
    assert pushed.json() | {"type": None} == {
        "type": None,
        "accepted": 1,
        "duplicates": 0,
        "skipped": 0,
        "rejected": 0,
        "other": 0,
    }
    assert not warm(client, f"{REPO}:2.4.1")
    with start_worker(celery, pool="solo", perform_ping_check=False):
        wait_until(lambda: warm(client, f"{REPO}:2.4.1"), timeout=20, what="the push warmed")
        # Both platforms, through the event pipeline's write path: every blob and the
        # children's manifests are members (registry 3.x, the default version).
        assert {index, *blobs} <= members(cache_redis, REPO)
        assert cache_redis.exists(f"blobs::{index}", f"repository::{REPO}::blobs::{index}") == 2

        # Harbor deletes the manifest in its registry (the revision link goes, as the
        # registry's manifest delete does), then sends the webhook.
        Path(layout.store.os_path(paths.revision_link(REPO, index))).unlink()
        deleted = post(client, payload(f"delete-{fmt}", REPO, index, "2.4.1"))
        assert deleted.status_code == 202, deleted.text
        assert deleted.json()["accepted"] == 1
        wait_until(
            lambda: index not in members(cache_redis, REPO),
            timeout=20,
            what="the delete forgot the index",
        )
    assert not cache_redis.exists(f"repository::{REPO}::blobs::{index}")
    assert set(blobs) <= members(cache_redis, REPO)  # the platforms' manifests are still there


def test_a_push_by_digest_warms_the_image(
    client: TestClient, celery: WarmerCelery, cache_redis: redis.Redis, layout: LayoutWriter
) -> None:
    digest, blobs = layout.image("team/api", "1.0", b"only layer")
    doc = payload("push-cloudevents", "team/api", digest)  # tag is the digest
    assert doc["data"]["resources"][0]["tag"] == digest
    assert post(client, doc).status_code == 202
    with start_worker(celery, pool="solo", perform_ping_check=False):
        wait_until(lambda: warm(client, f"team/api@{digest}"), timeout=20, what="warm")
    assert set(blobs) <= members(cache_redis, "team/api")


def test_a_resend_is_a_duplicate(client: TestClient, multi: tuple[str, list[str]]) -> None:
    doc = payload("push-cloudevents", REPO, multi[0])
    assert post(client, doc).json()["accepted"] == 1
    again = copy.deepcopy(doc) | {"id": "a-fresh-uuid-for-the-retry"}
    assert post(client, again).json() | {"type": None} == {
        "type": None,
        "accepted": 0,
        "duplicates": 1,
        "skipped": 0,
        "rejected": 0,
        "other": 0,
    }


@pytest.mark.parametrize("fmt", ["default", "cloudevents"])
def test_a_pull_counts_as_a_pull(
    client: TestClient, state: StateStore, cache_redis: redis.Redis, fmt: str
) -> None:
    before = state.pulls_total()
    digest = "sha256:" + "a" * 64
    answer = post(client, payload(f"pull-{fmt}", REPO, digest))
    assert answer.status_code == 202
    assert answer.json()["accepted"] == 1
    wait_until(lambda: state.pulls_total() == before + 1, timeout=10, what="the pull counted")
    assert state.pulls(REPO) == 1
    assert dump(cache_redis) == {}


@pytest.mark.parametrize(
    ("name", "kind"),
    [("scan-default", "SCANNING_COMPLETED"), ("quota-cloudevents", "harbor.quota.warned")],
)
def test_other_types_are_acknowledged_and_counted(
    client: TestClient, cache_redis: redis.Redis, name: str, kind: str
) -> None:
    doc = json.loads((DATA / f"harbor-{name}.json").read_text())
    answer = post(client, doc)
    assert answer.status_code == 202
    assert answer.json() == {
        "type": kind,
        "accepted": 0,
        "duplicates": 0,
        "skipped": 0,
        "rejected": 0,
        "other": 1,
    }
    assert client.get("/healthz").json()["counts"]["harbor_other"] == 1
    assert dump(cache_redis) == {}


def test_a_resource_of_another_registry_is_a_counted_skip(
    client: TestClient, multi: tuple[str, list[str]], cache_redis: redis.Redis
) -> None:
    doc = payload("push-default", REPO, multi[0], "2.4.1")
    doc["event_data"]["resources"][0]["resource_url"] = f"other.example.com/{REPO}:2.4.1"
    answer = post(client, doc)
    assert answer.status_code == 202
    assert (answer.json()["skipped"], answer.json()["accepted"]) == (1, 0)
    assert "other.example.com" in answer.json()["reasons"][0]
    assert client.get("/healthz").json()["counts"]["harbor_skipped"] == 1


def test_a_wrong_resource_beside_good_ones_is_dead_lettered(
    client: TestClient, multi: tuple[str, list[str]], state: StateStore
) -> None:
    doc = payload("push-cloudevents", REPO, multi[0], "2.4.1")
    doc["data"]["resources"].append({"digest": "sha256:short", "tag": "x"})
    answer = post(client, doc)
    assert answer.status_code == 202
    assert (answer.json()["accepted"], answer.json()["rejected"]) == (1, 1)
    (letter,) = state.dead_letters()  # kept for a person, as /events keeps a rejected event
    assert letter.reason.startswith("Harbor harbor.artifact.pushed resource: ")
    assert "invalid digest" in letter.reason
    assert letter.event == {
        "harbor_type": "harbor.artifact.pushed",
        "repository": REPO,
        "resource": {"digest": "sha256:short", "tag": "x"},
    }


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{", 400, "not JSON"),
        ({"type": "PUSH_ARTIFACT", "occur_at": 1, "operator": "admin"}, 400, "event_data"),
        ({"type": "PUSH_ARTIFACT", "event_data": {"resources": "x"}}, 400, "non-empty list"),
        ({"type": ["PUSH_ARTIFACT"]}, 400, '"type"'),
        ({"type": "not a harbor type"}, 400, "unknown Harbor event type"),
        (
            {
                "type": "PUSH_ARTIFACT",
                "occur_at": 10**400,  # float() of it overflowed: a 500
                "event_data": {
                    "resources": [{"digest": "sha256:" + "a" * 64, "tag": "1"}],
                    "repository": {"repo_full_name": REPO},
                },
            },
            400,
            "occur_at",
        ),
        (
            {
                "type": "PUSH_ARTIFACT",
                "event_data": {
                    "resources": [{"digest": "sha256:short", "tag": "1"}],
                    "repository": {"repo_full_name": REPO},
                },
            },
            400,
            "invalid digest",
        ),
    ],
)
def test_malformed_payloads_get_a_clear_4xx(
    client: TestClient, cache_redis: redis.Redis, body: Any, status: int, says: str
) -> None:
    answer = post(client, body)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["error"]
    assert dump(cache_redis) == {}


def test_the_token_content_type_and_bound(client: TestClient, multi: tuple[str, list[str]]) -> None:
    doc = json.dumps(payload("push-default", REPO, multi[0], "2.4.1")).encode()
    for auth in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
        answer = client.post("/harbor", content=doc, headers=JSON | auth)
        assert answer.status_code == 401
    assert client.post("/harbor", content=doc, headers=JSON | AUTH).status_code == 202
    assert post(client, doc, {"content-type": "text/plain"}).status_code == 415
    huge = b'{"type": "PUSH_ARTIFACT", "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    assert post(client, huge).status_code == 413
    assert client.get("/harbor", headers=AUTH).status_code == 405
