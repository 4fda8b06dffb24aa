"""A delete always wins, with real registries (2.8 and 3.1, ``storage.delete.enabled: true``).

An image is pushed to one repository and mounted into another: they share its layers and its
manifest. A layer and the manifest are deleted from the first through the registry's API while
the warmer writes: a re-warm (``warmer rewarm`` in the foreground, and the fan-out's tasks), a
replay of the registry's own events (a push delivered after its delete), and a push task whose
first try wrote and lost its reply, tried again. Each delete is made right after the writer read
the store and before it writes (a hook on its store: no sleeps), and its event is handled at once
by another worker, so only the writer's re-check (``worker/core/writes.py``) can take the entry
back. Then the registry, reading the warmed cache, answers 404 for each deleted blob where it
was deleted and 200 where it is still linked, and no membership names it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from typer.testing import CliRunner

from tasks import worker_app
from tests.support.interleave import FaultyCache, lost_reply
from tests.support.oci import Image, layer, write_layout
from tests.support.redisdbs import DB
from tests.support.registry import Registry, copy, delete, running_registry, status
from worker.cache.keys import repository_blob_key, repository_blobs_key
from worker.celeryapp import WarmerCelery
from worker.celeryapp.names import EVENTS_TASK, REWARM_CHUNK_TASK
from worker.cli import app as cli
from worker.cli.blobs import open_service
from worker.cli.demo.registry import RegistryBinary
from worker.cli.processes import wait_until
from worker.config.settings import load_settings
from worker.core.blobservice import CachedBlobService
from worker.core.fanout import plan
from worker.core.rewarm import summarize
from worker.registry.events import Event, Message, classify
from worker.registry.mediatypes import OCI_MANIFEST
from worker.registry.versions import RegistryVersion
from worker.storage import Store

pytestmark = pytest.mark.e2e

DOOMED, KEPT = "dw/doomed", "dw/kept"  # deleted from DOOMED; still linked in KEPT
DBS = {
    "WARMER_REDIS_URL": DB.DELETE_WINS_CACHE,
    "WARMER_STATE_URL": DB.DELETE_WINS_STATE,
    "WARMER_BROKER_URL": DB.DELETE_WINS_BROKER,
}


class _Sink(ThreadingHTTPServer):
    """The registry's notification endpoint: every event kept, in the order it came."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Receive)
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def messages(self, actions: tuple[str, ...], digest: str | None = None) -> list[Message]:
        """The task messages of the events with these actions (and target digest)."""
        with self.lock:
            raw = [e for e in self.events if e["action"] in actions]
        events = [classify(e) for e in raw if digest in (None, e["target"].get("digest"))]
        return [e.as_message() for e in events if isinstance(e, Event)]


class _Receive(BaseHTTPRequestHandler):
    server: _Sink

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        with self.server.lock:
            self.server.events.extend(json.loads(body)["events"])
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class World:
    """The registry, what it notified, its cache, and the worker that handles its deletes."""

    registry: Registry
    sink: _Sink
    cache: redis.Redis
    shared: str  # a layer of both repositories
    manifest: str  # the image's manifest, in both repositories
    version: RegistryVersion
    deleter: WarmerCelery  # the worker that handles the deletes' events

    @staticmethod
    def worker(store_hooks: dict[bool, Callable[[], None]] | None = None) -> WarmerCelery:
        """A worker's app; with hooks, its store runs them (see :class:`_DeleteAfterRead`)."""
        app = worker_app(load_settings())
        if store_hooks is not None:
            app.context._store = cast(Store, _DeleteAfterRead(app.context.store, store_hooks))
        return app

    def handle(self, messages: list[Message], worker: WarmerCelery | None = None) -> Any:
        """The events task run on ``messages`` (by default by the worker that handles deletes)."""
        return (worker or self.deleter).tasks[EVENTS_TASK].apply(args=(messages,)).get()

    def delete(self, kind: str, digest: str) -> None:
        """``DELETE /v2/DOOMED/<kind>/<digest>``, and its event handled at once."""
        assert delete(self.registry, f"{DOOMED}/{kind}/{digest}") == 202
        messages = wait_until(
            lambda: self.sink.messages(("delete",), digest),
            timeout=10,
            what=f"the registry's delete event of {digest}",
        )
        result = self.handle(messages)
        assert (result["evicted"], result["retry"], result["dead"]) == (1, 0, 0), result

    def hooks(self, *, blob: bool = True, manifest: bool = True) -> dict[bool, Callable[[], None]]:
        """Deletes to make right after a writer's first read of DOOMED's blobs, manifests."""
        hooks: dict[bool, Callable[[], None]] = {}
        if blob:
            hooks[False] = lambda: self.delete("blobs", self.shared)
        if manifest:
            hooks[True] = lambda: self.delete("manifests", self.manifest)
        return hooks

    def member(self, repository: str, digest: str) -> bool:
        return bool(self.cache.sismember(repository_blobs_key(repository), digest))


class _DeleteAfterRead:
    """A writer's store: right after its first read of DOOMED's blobs (``False``) or manifests
    (``True``), that hook runs: the read's answer is stale, the writer has not written yet."""

    def __init__(self, store: Store, hooks: dict[bool, Callable[[], None]]) -> None:
        self._store, self._hooks = store, hooks

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in ("fetch_many", "fetch_listed"):  # a re-check (fetch_cached) is not hooked
            return attr

        def read(repository: str, *args: Any, **kwargs: Any) -> Any:
            answer = attr(repository, *args, **kwargs)
            if repository == DOOMED:
                hook = self._hooks.pop(bool(kwargs.get("manifests")), None)
                if hook is not None:
                    hook()
            return answer

        return read


@pytest.fixture
def world(
    redis_proc: Any, tmp_path: Path, binary: RegistryBinary, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    """An image in DOOMED and mounted into KEPT, on a registry that notifies a sink; the
    warmer's settings (its cache is the registry's) in the environment."""
    base = f"redis://{redis_proc.host}:{redis_proc.port}"
    for name, db in DBS.items():
        monkeypatch.setenv(name, f"{base}/{db}")
    root = tmp_path / "storage"
    monkeypatch.setenv("WARMER_STORAGE_ROOT", str(root))
    monkeypatch.setenv("WARMER_REGISTRY_VERSION", binary.version.value)
    clients = [
        redis.Redis(host=redis_proc.host, port=redis_proc.port, db=db) for db in DBS.values()
    ]
    for client in clients:
        client.flushdb()
    sink = _Sink()
    serving = threading.Thread(target=sink.serve_forever, args=(0.05,), daemon=True)
    serving.start()
    shared = layer("shared.txt", b"a layer of both repositories")
    image = Image([shared, layer("own.txt", b"another")], label="delete-wins")
    try:
        with running_registry(
            tmp_path / "registry",
            root=root,
            redis_url=f"{base}/{DB.DELETE_WINS_CACHE}",
            notify_url=f"http://127.0.0.1:{sink.server_port}/events",
            binary=binary,
        ) as registry:
            registry.push(write_layout(tmp_path / "layout", image), f"{DOOMED}:v1")
            copy(registry, f"{DOOMED}:v1", f"{KEPT}:v1")  # a cross-repository mount
            wait_until(  # a registry notifies in order: the last push's event comes last
                lambda: sink.messages(("push",), image.manifest.digest)[1:],
                timeout=10,
                what="the events of both pushes",
            )
            digests = shared.digest, image.manifest.digest
            yield World(registry, sink, clients[0], *digests, binary.version, World.worker())
    finally:
        sink.shutdown()
        sink.server_close()
        serving.join(5)
        for client in clients:
            client.flushdb()
            client.close()


def _assert_the_delete_won(world: World, *, manifest: bool = True) -> None:
    """The registry answers 404 for each deleted blob in DOOMED, 200 in KEPT, where it is still
    linked (a manifest by its manifest URL; its blob URL in DOOMED would answer from a stale
    membership too); and no entry of DOOMED names it."""
    expected = {f"{DOOMED}/blobs/{world.shared}": 404, f"{KEPT}/blobs/{world.shared}": 200}
    if manifest:
        for path in (f"{DOOMED}/manifests/", f"{DOOMED}/blobs/", f"{KEPT}/manifests/"):
            expected[path + world.manifest] = 200 if path.startswith(KEPT) else 404
    for method in ("HEAD", "GET"):
        answers = {path: status(world.registry, path, method, OCI_MANIFEST) for path in expected}
        wrong = {path: got for path, got in answers.items() if got != expected[path]}
        assert not wrong, f"{method} answered {wrong}: 404 expected in {DOOMED}, 200 in {KEPT}"
    for digest in [world.shared, world.manifest] if manifest else [world.shared]:
        assert not world.member(DOOMED, digest), f"{DOOMED} still lists {digest}"
        assert not world.cache.exists(repository_blob_key(DOOMED, digest))


@pytest.mark.parametrize("form", ["foreground", "fan-out"])
def test_a_rewarm_meeting_deletes_leaves_nothing_deleted(
    world: World, form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.cache.flushdb()  # a cache restarted empty: the re-warm writes every entry
    hooks = world.hooks()
    if form == "foreground":  # `warmer rewarm`, its store hooked

        def open_hooked(ctx: Any) -> CachedBlobService:
            service = open_service(ctx)
            store = cast(Store, _DeleteAfterRead(service.store, hooks))
            return CachedBlobService(service.cache, store, service.figures, service.writer.journal)

        monkeypatch.setattr("worker.cli.jobs.open_service", open_hooked)
        run = CliRunner().invoke(cli, ["rewarm", "--json"])
        assert run.exit_code == 0, run.output
        summary = json.loads(run.stdout.strip().splitlines()[-1])
    else:  # the fan-out's tasks, as warmer.rewarm plans them: one chunk of both here
        worker = world.worker(hooks)
        chunks = list(plan(worker.context.store, []))
        assert [(sorted(c.names), c.shard) for c in chunks] == [(sorted([DOOMED, KEPT]), "")]
        task = worker.tasks[REWARM_CHUNK_TASK]
        summary = summarize([task.apply(args=(c.names, c.shard)).get() for c in chunks])
    assert not hooks, "a delete did not come between a read and its write"
    _assert_the_delete_won(world)
    assert world.member(KEPT, world.shared)  # warmed where it is still linked
    assert summary["repositories"] == 2
    # What the walk wrote and found deleted since: the layer; on 3.x the manifest's membership.
    assert summary["errors"] == (2 if world.version.manifests_are_members else 1), summary


def test_a_replay_with_pushes_after_their_deletes_leaves_nothing_deleted(world: World) -> None:
    world.delete("manifests", world.manifest)  # deleted, and its event handled
    world.cache.flushdb()  # a cache restarted empty: the replay writes every entry
    # The replay: the deletes' events again, then the pushes', late (the manifest's push after
    # its delete); the layer is deleted while it runs, right after it read the layer's link.
    deletes = world.handle(world.sink.messages(("delete",)))
    assert (deletes["retry"], deletes["dead"]) == (0, 0), deletes
    pushes = world.sink.messages(("push", "mount"))
    assert len(pushes) == 8  # per repository: two layers, the config, the manifest
    hooks = world.hooks(manifest=False)
    replayed = world.handle(pushes, world.worker(hooks))
    assert not hooks, "the delete did not come between the replay's read and its write"
    _assert_the_delete_won(world)
    assert world.member(KEPT, world.shared)
    # The layer in DOOMED is dead (deleted meanwhile); DOOMED's manifest push waits for a
    # manifest that never comes and is left for a later try.
    assert (replayed["dead"], replayed["retry"]) == (1, 1), replayed


def test_a_retried_push_whose_first_try_wrote_leaves_nothing_deleted(world: World) -> None:
    world.cache.flushdb()  # a cache restarted empty: the push writes its entry
    push = world.sink.messages(("push",), world.shared)
    assert len(push) == 1
    hooks = world.hooks(manifest=False)
    worker = world.worker(hooks)
    faulty = FaultyCache(world.cache, world.version)
    faulty.fault = lost_reply()  # the write is made, its reply lost: no re-check this try
    worker.context._cache = faulty
    first = world.handle(push, worker)
    assert not hooks, "the delete did not come between the first try's read and its write"
    assert (first["warmed"], first["retry"]) == (0, 1), first
    # Left by the first try: the registry serves the deleted layer from DOOMED now.
    assert world.member(DOOMED, world.shared)
    assert status(world.registry, f"{DOOMED}/blobs/{world.shared}", "HEAD") == 200
    retried = world.handle(push, worker)  # the same task, the same events, again
    _assert_the_delete_won(world, manifest=False)
    assert (retried["warmed"], retried["dead"]) == (0, 1), retried
