"""One bad event fails alone: in a batch, in the receiver, in a task, in a re-warm's fan-out.

Real Redis, a real store on disk, and a real Celery worker (solo, on the Redis broker).
"""

from __future__ import annotations

import gc
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from starlette.testclient import TestClient

import tasks.events as tasks_events
from bench.layout import LayoutWriter
from tasks import worker_app
from tests.support.notifications import event
from tests.support.redisdbs import DB
from worker.celeryapp import WarmerCelery
from worker.celeryapp.names import EVENTS_TASK, REWARM_CHUNK_TASK
from worker.cli.processes import wait_until
from worker.config.settings import load_settings
from worker.core.blobservice import CachedBlobService
from worker.core.pipeline import process
from worker.receiver.webhook import create_webhook
from worker.registry.events import Event, Kind
from worker.state import StateStore
from worker.state.ledger import replay

TOKEN = "isolation-token"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _poisoned_manifests(layout: LayoutWriter, repository: str) -> list[str]:
    """Manifests the registry accepts and Python's json refuses: a 5,000-digit integer, and
    2,000 levels of nesting, each in a field nobody reads."""
    config = layout.blob(b"{}")
    base = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}
    base["config"] = {"mediaType": "x", "digest": config, "size": 2}
    huge = json.dumps(base)[:-1] + ', "x": ' + "9" * 5000 + "}"
    deep = json.dumps(base)[:-1] + ', "x": ' + "[" * 2000 + "]" * 2000 + "}"
    digests = []
    for payload in (huge, deep):
        digest = layout.blob(payload.encode())
        layout.revision(repository, digest)
        digests.append(digest)
    return digests


def test_a_manifest_python_cannot_parse_fails_alone_in_its_batch(
    service: CachedBlobService, layout: LayoutWriter, state: StateStore, cache_redis: redis.Redis
) -> None:
    poisoned = _poisoned_manifests(layout, "bad/app")
    good = layout.blob(b"good")
    layout.link("other", good)
    events = [Event(f"p{i}", Kind.WARM_MANIFEST, "bad/app", d) for i, d in enumerate(poisoned)]
    events.append(Event("g", Kind.WARM_BLOB, "other", good))
    result = process(events, service, state)
    assert sorted(e.id for e, _ in result.dead) == ["p0", "p1"]
    assert result.retry == []
    assert all("manifest" in reason for _, reason in result.dead)
    assert cache_redis.sismember("repository::other::blobs", good)


class _Exploding:
    """A store that raises something unforeseen for one digest: a bug, not an I/O error."""

    def __init__(self, store: Any, digest: str) -> None:
        self._store = store
        self._digest = digest

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def fetch_many(
        self, repository: str, digests: Any, sizes: Any = None, *, manifests: bool = False
    ) -> Any:
        if self._digest in digests:
            raise RuntimeError("unforeseen")
        return self._store.fetch_many(repository, digests, sizes, manifests=manifests)


def test_whatever_one_blob_raises_only_that_event_is_dead(
    service: CachedBlobService, layout: LayoutWriter, state: StateStore, cache_redis: redis.Redis
) -> None:
    blobs = [layout.blob(f"b{i}".encode()) for i in range(3)]
    for b in blobs:
        layout.link("team/app", b)
    exploding = CachedBlobService(service.cache, _Exploding(service.store, blobs[1]))
    events = [Event(f"e{i}", Kind.WARM_BLOB, "team/app", b) for i, b in enumerate(blobs)]
    result = process(events, exploding, state)
    assert [(e.id, r) for e, r in result.dead] == [("e1", "RuntimeError: unforeseen")]
    assert result.figures.warmed == 2
    assert cache_redis.smembers("repository::team/app::blobs") == {
        blobs[0].encode(),
        blobs[2].encode(),
    }


@pytest.fixture
def receiver(state: StateStore) -> Iterator[tuple[TestClient, list[list[Any]]]]:
    published: list[list[Any]] = []
    app = create_webhook(
        state=state, publish=published.append, token=TOKEN, first_wait=60, window=0.001
    )
    with TestClient(app) as client:
        yield client, published


def _post(client: TestClient, body: bytes) -> Any:
    headers = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}
    return client.post("/events", content=body, headers=headers)


def test_the_receiver_never_answers_5xx_for_what_a_request_holds(
    receiver: tuple[TestClient, list[list[Any]]], state: StateStore
) -> None:
    client, published = receiver
    good = event("push", "team/app", "sha256:" + "a" * 64)
    unhashable = event("push", "team/app", "sha256:" + "b" * 64)
    unhashable["target"]["mediaType"] = {"a": 1}
    huge = json.dumps(event("push", "team/app", "sha256:" + "c" * 64))[:-1]
    huge += ', "n": ' + "7" * 5000 + "}"
    body = b'{"events": [' + json.dumps(good).encode() + b", " + huge.encode() + b", "
    body += json.dumps(unhashable).encode() + b"]}"
    answer = _post(client, body)
    assert answer.status_code == 202, answer.text
    # The unhashable media type is not a manifest's: a blob push, like the others.
    assert answer.json()["accepted"] == 3
    assert len([m for batch in published for m in batch]) == 3

    deep = b'{"events": [{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}"
    answer = _post(client, deep)
    assert answer.status_code < 500, answer.text
    assert answer.json()["rejected"] == 1
    assert "nested" in state.dead_letters()[-1].reason

    for hostile in ([1] * 3, [{"target": {"repository": ["x"]}, "id": {"a": []}}]):
        answer = _post(client, json.dumps({"events": hostile}).encode())
        assert answer.status_code == 202, answer.text


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
    app.conf.task_default_queue = f"warmer-test-{uuid.uuid4().hex[:8]}"
    app.conf.worker_hijack_root_logger = False
    yield app
    # Task results held in reference cycles unsubscribe when collected: now, while the test's
    # Redis still answers, not at exit (where the subscriber would retry for 20 s).
    gc.collect()


def test_a_task_dead_letters_only_the_poisoned_event_of_its_batch(
    app: WarmerCelery, layout: LayoutWriter, cache_redis: redis.Redis, state_redis: redis.Redis
) -> None:
    poisoned = _poisoned_manifests(layout, "bad/app")
    good = layout.blob(b"good")
    layout.link("other", good)
    messages = [Event("p", Kind.WARM_MANIFEST, "bad/app", poisoned[1]).as_message()]
    messages.append(Event("g", Kind.WARM_BLOB, "other", good).as_message())
    state = StateStore(state_redis)
    state.track(messages, 1e12)
    with start_worker(app, pool="solo", perform_ping_check=False):
        result = app.send_task(EVENTS_TASK, args=[messages]).get(timeout=30)
    assert (result["dead"], result["warmed"]) == (1, 1)
    letters = state.dead_letters()
    assert [letter.event[0] for letter in letters] == ["p"]
    assert state.pending_count() == 0
    assert cache_redis.sismember("repository::other::blobs", good)


def test_a_repository_gone_before_its_rewarm_task_is_skipped_and_the_others_warmed(
    app: WarmerCelery, layout: LayoutWriter, cache_redis: redis.Redis
) -> None:
    kept = layout.blob(b"kept")
    layout.link("kept", kept)
    with start_worker(app, pool="solo", perform_ping_check=False):
        names = ["gone/meanwhile", "kept"]
        total = app.send_task(REWARM_CHUNK_TASK, args=[names, ""]).get(timeout=30)
    assert (total["repositories"], total["skipped"], total["blobs"]) == (1, 1, 1)
    assert cache_redis.sismember("repository::kept::blobs", kept)


def test_a_batch_whose_task_fails_is_split_and_only_the_culprit_dead_lettered(
    app: WarmerCelery,
    layout: LayoutWriter,
    cache_redis: redis.Redis,
    state_redis: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A failure the pipeline's isolation does not catch (a bug around it): the task fails whole.
    real = process

    def failing_with_poison(batch: list[Event], *args: Any, **kwargs: Any) -> Any:
        if any(e.id == "poison" for e in batch):
            raise RuntimeError("a bug met the poison")
        return real(batch, *args, **kwargs)

    monkeypatch.setattr(tasks_events, "process", failing_with_poison)
    # The split's tasks are sent from the worker's thread, whose result subscriber (Celery's
    # backends are per thread) would outlive the test's Redis: no results for them here.
    monkeypatch.setattr(
        app.context,
        "publisher",
        lambda batch: app.send_task(EVENTS_TASK, args=[batch], ignore_result=True),
    )
    goods = [layout.blob(f"good {i}".encode()) for i in range(3)]
    for g in goods:
        layout.link("team/app", g)
    messages = [
        Event(f"g{i}", Kind.WARM_BLOB, "team/app", g).as_message() for i, g in enumerate(goods)
    ]
    messages.insert(1, Event("poison", Kind.WARM_BLOB, "team/app", goods[0]).as_message())
    state = StateStore(state_redis)
    state.track(messages, 1e12)
    with start_worker(app, pool="solo", perform_ping_check=False):
        app.send_task(EVENTS_TASK, args=[messages], ignore_result=True)

        def split_and_done() -> bool:
            return state.pending_count() == 0 and state.dead_letter_count() == 1

        wait_until(split_and_done, timeout=30, what="the batch split and settled")
    (letter,) = state.dead_letters()
    assert letter.event[0] == "poison"
    assert "a bug met the poison" in letter.reason
    assert cache_redis.smembers("repository::team/app::blobs") == {g.encode() for g in goods}


def test_a_replay_cannot_poison_itself(
    app: WarmerCelery, layout: LayoutWriter, cache_redis: redis.Redis, state_redis: redis.Redis
) -> None:
    poisoned = _poisoned_manifests(layout, "bad/app")
    goods = [layout.blob(f"good {i}".encode()) for i in range(3)]
    for g in goods:
        layout.link("other", g)
    state = StateStore(state_redis)
    letters = [
        ("an earlier failure", Event(f"g{i}", Kind.WARM_BLOB, "other", g).as_message())
        for i, g in enumerate(goods)
    ]
    letters.insert(
        1,
        ("an earlier failure", Event("p", Kind.WARM_MANIFEST, "bad/app", poisoned[0]).as_message()),
    )
    state.dead_letter(letters)
    with start_worker(app, pool="solo", perform_ping_check=False):
        result = replay(state, app.context.publish, now=time.time(), first_wait=60)
        assert result.replayed == 4

        def settled() -> bool:
            return state.pending_count() == 0 and state.dead_letter_count() == 1

        wait_until(settled, timeout=30, what="the replay to settle")
    (letter,) = state.dead_letters()
    assert letter.event[0] == "p"
    assert "manifest" in letter.reason
    assert cache_redis.smembers("repository::other::blobs") == {g.encode() for g in goods}
