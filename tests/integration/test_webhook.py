"""The receiver: every answer of the contract, and hostile input that writes no cache key."""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import httpx2
import pytest
import redis
from starlette.testclient import TestClient

from tests.support.notifications import envelope, event
from tests.support.redisdump import dump
from tests.support.registry import free_port
from worker.config.settings import load_settings
from worker.core.clients import build_state
from worker.receiver.webhook import create_webhook
from worker.registry.mediatypes import EVENTS_V1, EVENTS_V2
from worker.registry.versions import RegistryVersion
from worker.state import StateStore

TOKEN = "s3cret-token"
D = "sha256:" + "d" * 64
V1 = "application/vnd.docker.distribution.events.v1+json"


class Published:
    """What the receiver handed to the broker side; can be told to fail like a dead broker."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.down = False

    def __call__(self, messages: list[list[Any]]) -> None:
        if self.down:
            raise ConnectionError("broker is down")
        self.batches.append(messages)

    @property
    def messages(self) -> list[Any]:
        return [m for batch in self.batches for m in batch]


@pytest.fixture
def published() -> Published:
    return Published()


def _client(state: StateStore, published: Published, **kwargs: Any) -> TestClient:
    app = create_webhook(
        state=state,
        publish=published,
        window=0.001,
        first_wait=60,
        token=kwargs.pop("token", TOKEN),
        **kwargs,
    )
    return TestClient(app)


@pytest.fixture
def client(state: StateStore, published: Published) -> Iterator[TestClient]:
    with _client(state, published, max_body=4096) as c:
        yield c


def _post(
    client: TestClient,
    body: bytes,
    *,
    auth: str | None = f"Bearer {TOKEN}",
    content_type: str = V1,
    **headers: str,
) -> Any:
    h = {"content-type": content_type, **headers}
    if auth:
        h["authorization"] = auth
    return client.post("/events", content=body, headers=h)


def test_a_valid_envelope_is_accepted_once_with_the_broker(
    client: TestClient, published: Published
) -> None:
    body = envelope(
        event("push", "team/app", D, event_id="e1"), event("pull", "team/app", D, event_id="e2")
    )
    response = _post(client, body)
    assert response.status_code == 202
    assert response.json() == {"accepted": 2, "duplicates": 0, "ignored": 0, "rejected": 0}
    # A pull is no task: the receiver adds pulls up per repository and writes the sums.
    assert published.messages == [["e1", "warm-blob", "team/app", D]]


def test_events_take_post_only_and_other_paths_are_404(client: TestClient) -> None:
    assert client.get("/events").status_code == 405
    assert client.put("/events", content=b"{}").status_code == 405
    assert client.post("/other", content=b"{}").status_code == 404


@pytest.mark.parametrize(
    "auth",
    [
        None,
        "Bearer wrong",
        f"Bearer {TOKEN}x",
        "Token " + TOKEN,
        "Basic !!notbase64",
        "Basic " + base64.b64encode(b"user:wrong").decode(),
    ],
)
def test_bad_or_missing_auth_is_401(
    client: TestClient, published: Published, auth: str | None
) -> None:
    assert _post(client, envelope(event("push", "a", D)), auth=auth).status_code == 401
    assert published.messages == []


def test_basic_auth_with_the_token_as_password_is_accepted(client: TestClient) -> None:
    basic = "Basic " + base64.b64encode(f"registry:{TOKEN}".encode()).decode()
    assert _post(client, envelope(event("push", "a", D)), auth=basic).status_code == 202


@pytest.mark.parametrize(
    "content_type",
    [
        "application/vnd.docker.distribution.events.v1+json",
        "application/vnd.docker.distribution.events.v2+json; charset=utf-8",
        "application/json",
    ],
)
def test_the_registry_content_types_are_accepted(client: TestClient, content_type: str) -> None:
    response = _post(client, envelope(event("push", "a", D)), content_type=content_type)
    assert response.status_code == 202


def test_other_content_types_are_415(client: TestClient) -> None:
    assert _post(client, b"x", content_type="text/plain").status_code == 415


def test_a_declared_large_body_is_413_before_it_is_read(client: TestClient) -> None:
    assert _post(client, b"{}", **{"content-length": "999999"}).status_code == 413


def test_a_streamed_large_body_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    response = client.post(
        "/events",
        content=chunks(),
        headers={"content-type": V1, "authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 413


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"events": 3}'])
def test_a_body_that_is_not_an_envelope_is_400(client: TestClient, body: bytes) -> None:
    assert _post(client, body).status_code == 400


def test_bad_events_are_dead_lettered_and_the_envelope_still_accepted(
    client: TestClient, published: Published, state: StateStore, cache_redis: redis.Redis
) -> None:
    body = envelope(
        event("push", "../../etc", D, event_id="bad1"),
        event("push", "team/app", "sha256:short", event_id="bad2"),
        event("teleport", "team/app", D, event_id="bad3"),
        event("push", "team/app", D, event_id="good"),
    )
    response = _post(client, body)
    assert response.status_code == 202
    assert response.json()["rejected"] == 3
    assert [m[0] for m in published.messages] == ["good"]
    reasons = [d.reason for d in state.dead_letters()]
    assert len(reasons) == 3
    assert "invalid repository name" in reasons[0]
    assert dump(cache_redis) == {}


def _dead_lettered_total(client: TestClient) -> float:
    lines = client.get("/metrics").text.splitlines()
    return float(next(x for x in lines if x.startswith("warmer_dead_lettered_total ")).split()[1])


def test_what_the_receiver_dead_letters_is_counted_in_dead_lettered_total(
    state: StateStore, published: Published
) -> None:
    # The alert on dead letters watches this counter: a receiver's dead letter counts too.
    with _client(state, published, max_body=300_000) as client:
        assert _dead_lettered_total(client) == 0
        body = envelope(event("push", "../../etc", D, event_id="bad"), event("push", "a", D))
        assert _post(client, body).json()["rejected"] == 1
        assert _dead_lettered_total(client) == 1
        assert _post(client, b"[" * 99_999 + b"]" * 99_999).json()["rejected"] == 1  # unreadable
        assert _dead_lettered_total(client) == 2


def test_duplicate_deliveries_are_sent_once(client: TestClient, published: Published) -> None:
    body = envelope(event("push", "a", D, event_id="same"), event("push", "a", D, event_id="same"))
    assert _post(client, body).json()["duplicates"] == 0
    again = _post(client, body)
    assert again.status_code == 202
    assert again.json() == {"accepted": 0, "duplicates": 1, "ignored": 0, "rejected": 0}
    assert len(published.messages) == 1


def test_a_refused_enqueue_is_503_and_not_marked_seen(
    client: TestClient, published: Published, state: StateStore
) -> None:
    body = envelope(event("push", "a", D, event_id="retry-me"))
    published.down = True
    assert _post(client, body).status_code == 503
    assert state.pending_count() == 1  # the ledger has it: sent again if the registry is not
    published.down = False
    response = _post(client, body)  # the registry sends the same event again
    assert response.json()["accepted"] == 1
    assert [m[0] for m in published.messages] == ["retry-me"]


def test_tag_deletes_are_accepted_and_not_sent(client: TestClient, published: Published) -> None:
    response = _post(client, envelope(event("delete", "a", tag="v1")))
    assert response.json()["ignored"] == 1
    assert published.messages == []


def test_a_state_redis_outage_is_503(published: Published) -> None:
    settings = load_settings(state_url=f"redis://127.0.0.1:{free_port()}/2", redis_timeout=0.3)
    with _client(build_state(settings), published) as client:
        assert _post(client, envelope(event("push", "a", D))).status_code == 503
    assert published.messages == []


def test_without_a_token_everyone_is_accepted(state: StateStore, published: Published) -> None:
    with _client(state, published, token=None) as client:
        assert _post(client, envelope(event("push", "a", D)), auth=None).status_code == 202


def test_health_and_readiness(
    state: StateStore, published: Published, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="worker.receiver.webhook")
    secret = "amqp://warmer:s3cret-pw@rabbit.internal:5672//"

    def broken() -> None:
        raise ConnectionError(f"cannot reach {secret}: connection refused")

    checks: dict[str, Callable[[], None]] = {"state": state.ping, "broker": broken}
    with _client(state, published, checks=checks) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["down"] == ["broker"]
        assert ready.json()["failures"] == {"broker": "not answering"}
        for leak in ("s3cret-pw", "rabbit.internal", "amqp://", "5672"):
            assert leak not in ready.text
    assert "amqp://***@rabbit.internal" in caplog.text
    assert "s3cret-pw" not in caplog.text
    with _client(state, published, checks={"state": state.ping}) as client:
        assert client.get("/readyz").json() == {"status": "ready"}


@pytest.mark.parametrize(
    ("configured", "content_type", "warned"),
    [
        (RegistryVersion.V2, EVENTS_V2, True),
        (RegistryVersion.V3, EVENTS_V1, True),
        (RegistryVersion.V3, EVENTS_V2, False),
        (RegistryVersion.V2_0_AND_V2, EVENTS_V1, False),
        (RegistryVersion.V2_0, EVENTS_V1, False),  # a 2.0 registry sends v1 events too
        (RegistryVersion.V2_0, EVENTS_V2, True),
    ],
)
def test_events_of_another_registry_version_are_logged_once(
    state: StateStore,
    published: Published,
    caplog: pytest.LogCaptureFixture,
    configured: RegistryVersion,
    content_type: str,
    warned: bool,
) -> None:
    caplog.set_level(logging.WARNING, logger="worker.receiver.webhook")
    client = _client(state, published, registry_version=configured)
    for n in range(2):
        response = client.post(
            "/events",
            content=envelope(event("push", "team/app", D, event_id=f"v{n}")),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type},
        )
        assert response.status_code == 202  # the events are handled all the same
    lines = [r.getMessage() for r in caplog.records if "WARMER_REGISTRY_VERSION" in r.getMessage()]
    assert len(lines) == (1 if warned else 0), lines


class CountingState(StateStore):
    """A real state store that counts its round trips for events: dedup and the ledger."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self.round_trips = 0

    def admit(self, event_ids: Sequence[str], messages: Sequence[Any], due: float) -> list[bool]:
        self.round_trips += 1
        return super().admit(event_ids, messages, due)

    def unseen(self, event_ids: Sequence[str]) -> list[str]:
        self.round_trips += 1
        return super().unseen(event_ids)

    def mark_seen(self, event_ids: Iterable[str]) -> None:
        self.round_trips += 1
        super().mark_seen(event_ids)

    def track(self, messages: Sequence[Any], due: float) -> None:
        self.round_trips += 1
        super().track(messages, due)


def test_concurrent_requests_share_two_state_round_trips_a_batch(
    state_redis: redis.Redis, published: Published
) -> None:
    state = CountingState(state_redis)
    state.mark_seen(["old"])
    state.round_trips = 0
    app = create_webhook(state=state, publish=published, token=TOKEN, first_wait=60, window=0.2)
    headers = {"content-type": V1, "authorization": f"Bearer {TOKEN}"}
    ids = ["old", *(f"e{i}" for i in range(19)), "e0"]  # a resend, and one id in two requests

    async def main() -> list[Any]:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://warmer") as c:
            # The first request leaves alone (nothing left before it); the rest share a batch.
            first = await c.post(
                "/events", content=envelope(event("push", "a", D)), headers=headers
            )
            rest = await asyncio.gather(
                *(
                    c.post(
                        "/events",
                        content=envelope(event("push", "a", D, event_id=i)),
                        headers=headers,
                    )
                    for i in ids
                )
            )
            return [first, *rest]

    responses = asyncio.run(main())
    assert all(r.status_code == 202 for r in responses)
    # Two a batch (dedup and ledger before the broker, seen marks after), not one a request.
    assert state.round_trips == 4
    assert sorted(m[0] for m in published.messages[1:]) == sorted(f"e{i}" for i in range(19))
    assert responses[1].json()["duplicates"] == 1  # "old" was seen before
    assert state.unseen(ids) == []  # every id sent is now marked seen
    assert state.pending_count() == 20  # and every event sent is in the ledger, once


def test_a_resend_during_a_publish_that_then_fails_is_published(state: StateStore) -> None:
    # The registry timed out on a request whose publish hangs, and sends the event again: the
    # resend must reach the broker, not pass for a duplicate of what is about to fail.
    release = threading.Event()
    sent: list[list[Any]] = []

    def publish(messages: list[Any]) -> None:
        if not sent and not release.is_set():
            sent.append([])  # the first publish: under way, then the broker is gone
            release.wait(10)
            raise ConnectionError("broker went away")
        sent.append(messages)

    app = create_webhook(state=state, publish=publish, token=TOKEN, first_wait=60, window=0.001)
    headers = {"content-type": V1, "authorization": f"Bearer {TOKEN}"}
    body = envelope(event("push", "a", D, event_id="same"))

    async def main() -> tuple[Any, Any]:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://warmer") as c:
            first = asyncio.create_task(c.post("/events", content=body, headers=headers))
            deadline = time.monotonic() + 10
            while not sent and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            resend = await c.post("/events", content=body, headers=headers)
            release.set()
            return await first, resend

    first, resend = asyncio.run(main())
    assert first.status_code == 503
    assert resend.status_code == 202
    assert resend.json()["accepted"] == 1
    assert [m[0] for batch in sent for m in batch] == ["same"]
    assert state.unseen(["same"]) == []  # seen once the broker took it
