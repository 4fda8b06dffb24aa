"""Clean shutdown, with real processes: SIGTERM or SIGINT stops ``warmer worker`` and ``warmer
webhook`` with everything they started, within 30 s; after a SIGKILL of the webhook, its
receivers end on their own within seconds. ``warmer up``'s: tests/e2e/test_up_shutdown.py."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bench.layout import LayoutWriter
from tests.support.notifications import envelope, event
from tests.support.processtree import (
    STOP_SECONDS,
    TOKEN,
    alive,
    all_gone,
    descendants,
    shutdown_env,
    start,
    started_processes,
    worker_ready,
)
from tests.support.registry import free_port
from tests.support.sender import RegistryLikeSender
from worker.cli.demo.services import webhook_ready
from worker.cli.processes import wait_until
from worker.storage import paths


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; whatever is left of them (orphans too) is killed afterwards."""
    with started_processes(tmp_path) as procs:
        yield procs


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_warmer_worker_with_its_pool(
    sig: signal.Signals,
    redis_proc: Any,
    tmp_path: Path,
    started: list[subprocess.Popen[bytes]],
) -> None:
    log = tmp_path / "worker.log"
    worker = start(
        ["worker", "--concurrency", "2"], shutdown_env(redis_proc, tmp_path), log, started
    )
    wait_until(lambda: worker_ready(log), timeout=60, what="the worker to be ready")
    family = descendants(worker.pid)
    assert len(family) >= 2, family
    worker.send_signal(sig)
    wait_until(
        lambda: all_gone({worker.pid, *family}),
        timeout=STOP_SECONDS,
        what=f"warmer worker and its pool to end after {sig.name}",
    )


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_warmer_webhook(
    sig: signal.Signals,
    workers: int,
    redis_proc: Any,
    tmp_path: Path,
    started: list[subprocess.Popen[bytes]],
) -> None:
    port = free_port()
    log = tmp_path / "webhook.log"
    args = ["webhook", "--port", str(port), "--workers", str(workers)]
    hook = start(args, shutdown_env(redis_proc, tmp_path), log, started)
    wait_until(lambda: webhook_ready(f"http://127.0.0.1:{port}"), timeout=60, what="readyz")
    family = descendants(hook.pid)
    # --workers 2: two receiver processes under the one started (1: none, uvicorn serves in it).
    assert len(family) == (workers if workers > 1 else 0), family
    hook.send_signal(sig)
    wait_until(
        lambda: all_gone(family) and (not alive(hook.pid) or hook.poll() is not None),
        timeout=STOP_SECONDS,
        what=f"warmer webhook and its receivers to end after {sig.name}",
    )
    assert hook.wait() == 0, log.read_text()


def test_after_a_sigkill_of_warmer_webhook_its_receivers_end_on_their_own(
    redis_proc: Any, tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    args = ["webhook", "--port", str(port), "--workers", "2"]
    hook = start(args, shutdown_env(redis_proc, tmp_path), tmp_path / "webhook.log", started)
    wait_until(lambda: webhook_ready(f"http://127.0.0.1:{port}"), timeout=60, what="readyz")
    family = descendants(hook.pid)
    assert len(family) == 2, family
    hook.kill()
    hook.wait()
    wait_until(lambda: all_gone(family), timeout=10, what="the receivers of a killed webhook")


def _waiting_for_storage(log: Path) -> bool:
    # The task is running: its manifest push waits for the manifest (warm tasks keep no
    # STARTED state, and events are off unless Flower watches).
    return "is not in storage yet" in log.read_text(errors="replace")


def test_a_task_still_running_after_the_grace_goes_back_to_the_queue(
    redis_proc: Any,
    layout: LayoutWriter,
    cache_redis: redis.Redis,
    state_redis: redis.Redis,
    tmp_path: Path,
    started: list[subprocess.Popen[bytes]],
) -> None:
    # A manifest push that arrives before the manifest is readable keeps its task busy (it
    # waits for storage): SIGTERM then, with a grace shorter than that wait.
    manifest, blobs = layout.image("team/app", "v1", b"l1", b"l2")
    manifest_path = Path(layout.store.os_path(paths.blob_data(manifest)))
    payload = manifest_path.read_bytes()
    manifest_path.unlink()
    env = shutdown_env(redis_proc, tmp_path) | {
        "WARMER_STORAGE_ROOT": str(layout.store.root),
        "WARMER_SHUTDOWN_GRACE": "0.5",
        "WARMER_VISIBILITY_TIMEOUT": "2",
    }
    broker = redis.Redis.from_url(env["WARMER_BROKER_URL"])
    broker.flushdb()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    start(["webhook", "--port", str(port)], env, tmp_path / "webhook.log", started)
    wait_until(lambda: webhook_ready(url), timeout=60, what="readyz")
    worker_args = ["worker", "--concurrency", "1", "--without-mingle", "--without-gossip"]
    first = start(worker_args, env, tmp_path / "worker1.log", started)
    wait_until(lambda: worker_ready(tmp_path / "worker1.log"), timeout=60, what="worker ready")
    kind = "application/vnd.oci.image.manifest.v1+json"
    push = envelope(event("push", "team/app", manifest, media_type=kind, tag="v1"))
    sender = RegistryLikeSender(f"{url}/events", TOKEN, [push])
    sender.start()
    log = tmp_path / "worker1.log"
    wait_until(lambda: _waiting_for_storage(log), timeout=30, what="the task running")
    first.send_signal(signal.SIGTERM)
    assert first.wait(STOP_SECONDS) is not None
    manifest_path.write_bytes(payload)  # the registry's storage catches up
    # No beat runs, so the ledger sends nothing again: only the broker can hand the message
    # out again, which it does only if the cancelled task's message went back to the queue.
    start(worker_args, env, tmp_path / "worker2.log", started)

    def warm() -> bool:
        return all(cache_redis.sismember("repository::team/app::blobs", b) for b in blobs)

    wait_until(warm, timeout=60, what="the returned task to warm the image")
    broker.flushdb()
