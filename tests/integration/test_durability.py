"""Nothing of a stream is lost to a worker killed with SIGKILL or to a broker restart.

Real processes throughout: ``warmer webhook``, ``warmer worker``, a broker redis-server with
append-only persistence (as a broker must have), and a sender that retries like a registry.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bench.layout import LayoutWriter
from tests.support.notifications import envelope, event
from tests.support.redisdbs import shared_env
from tests.support.registry import free_port
from tests.support.sender import RegistryLikeSender
from tests.support.services import warmer_process, webhook_ready
from worker.cli.processes import wait_until
from worker.state import StateStore
from worker.storage import paths

TOKEN = "durability-token"
BLOBS = 240


class BrokerRedis:
    """A redis-server with append-only persistence on a fixed port, that can be killed."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        wait_until(lambda: _pings(client), timeout=20, what="broker redis-server")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerRedis]:
    b = BrokerRedis(tmp_path)
    b.start()
    yield b
    b.kill()


WORKER_ARGS = ["worker", "--pool", "solo", "--without-mingle", "--without-gossip"]


def _env(
    redis_proc: Any, broker: BrokerRedis, layout: LayoutWriter, *, visibility_timeout: int
) -> dict[str, str]:
    return {
        **shared_env(redis_proc),
        "WARMER_BROKER_URL": f"redis://127.0.0.1:{broker.port}/0",
        "WARMER_STORAGE_ROOT": str(layout.store.root),
        "WARMER_WEBHOOK_TOKEN": TOKEN,
        # Short, so that a message a killed worker held comes back within the test.
        "WARMER_VISIBILITY_TIMEOUT": str(visibility_timeout),
    }


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_no_event_is_lost_to_a_killed_worker_or_a_restarted_broker(
    redis_proc: Any,
    broker: BrokerRedis,
    layout: LayoutWriter,
    cache_redis: redis.Redis,
    state_redis: redis.Redis,
    tmp_path: Path,
) -> None:
    digests = []
    for i in range(BLOBS):
        digest = layout.blob(f"blob {i}".encode())
        layout.link(f"app{i % 4}", digest)
        digests.append((f"app{i % 4}", digest))
    bodies = [envelope(event("push", repo, d)) for repo, d in digests]
    env = _env(redis_proc, broker, layout, visibility_timeout=3)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    beat_args = ["beat", "--schedule", str(tmp_path / "beat-schedule")]
    with (
        warmer_process(["webhook", "--port", str(port)], env, tmp_path / "webhook.log"),
        warmer_process(beat_args, env, tmp_path / "beat.log"),
    ):
        wait_until(lambda: webhook_ready(url), timeout=30, what="webhook /readyz")
        sender = RegistryLikeSender(f"{url}/events", TOKEN, bodies)
        with warmer_process(WORKER_ARGS, env, tmp_path / "worker1.log") as first:
            sender.start()
            wait_until(lambda: sender.sent >= BLOBS // 3, timeout=60, what="a third of the stream")
            _kill_group(first)  # SIGKILL: no goodbye, messages held are never acknowledged
        wait_until(lambda: sender.sent >= BLOBS // 2, timeout=60, what="half of the stream")
        broker.kill()
        time.sleep(0.5)  # the sender meets refusals meanwhile, as a registry would
        broker.start()
        with warmer_process(WORKER_ARGS, env, tmp_path / "worker2.log"):
            sender.join(timeout=120)
            assert sender.sent == BLOBS

            def all_warm() -> bool:
                return all(cache_redis.sismember(f"repository::{r}::blobs", d) for r, d in digests)

            wait_until(all_warm, timeout=90, what="every pushed blob to be warm")
            state = StateStore(state_redis)
            wait_until(lambda: state.pending_count() == 0, timeout=30, what="an empty ledger")
    assert sender.refused > 0  # the broker restart was felt, and retried through
    assert state.dead_letter_count() == 0


def _waiting_for_storage(log: Path) -> bool:
    # The task is running: its manifest push waits for the manifest (warm tasks keep no
    # STARTED state, and events are off unless Flower watches).
    return "is not in storage yet" in log.read_text(errors="replace")


def test_a_task_held_by_a_killed_worker_is_delivered_again(
    redis_proc: Any,
    broker: BrokerRedis,
    layout: LayoutWriter,
    cache_redis: redis.Redis,
    state_redis: redis.Redis,
    tmp_path: Path,
) -> None:
    # A manifest push that arrives before the manifest is in the store keeps the task busy in
    # its wait: the moment to kill the worker, holding an unacknowledged message.
    manifest, blobs = layout.image("team/app", "v1", b"l1", b"l2")
    manifest_path = Path(layout.store.os_path(paths.blob_data(manifest)))
    payload = manifest_path.read_bytes()
    manifest_path.unlink()
    env = _env(redis_proc, broker, layout, visibility_timeout=2)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    beat_args = ["beat", "--schedule", str(tmp_path / "beat-schedule")]
    push = envelope(
        event(
            "push",
            "team/app",
            manifest,
            media_type="application/vnd.oci.image.manifest.v1+json",
            tag="v1",
        )
    )
    with (
        warmer_process(["webhook", "--port", str(port)], env, tmp_path / "webhook.log"),
        warmer_process(beat_args, env, tmp_path / "beat.log"),
    ):
        wait_until(lambda: webhook_ready(url), timeout=30, what="webhook /readyz")
        with warmer_process(WORKER_ARGS, env, tmp_path / "worker1.log") as first:
            sender = RegistryLikeSender(f"{url}/events", TOKEN, [push])
            sender.start()
            log = tmp_path / "worker1.log"
            wait_until(lambda: _waiting_for_storage(log), timeout=30, what="the task running")
            _kill_group(first)
        manifest_path.write_bytes(payload)  # the registry's storage catches up
        with warmer_process(WORKER_ARGS, env, tmp_path / "worker2.log"):

            def warm() -> bool:
                return all(cache_redis.sismember("repository::team/app::blobs", b) for b in blobs)

            wait_until(warm, timeout=60, what="the redelivered task to warm the image")
    assert cache_redis.exists(f"blobs::{manifest}")
