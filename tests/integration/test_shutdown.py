"""Clean shutdown, with real processes: SIGTERM or SIGINT stops ``warmer up``, ``warmer worker``
and ``warmer webhook`` with everything they started, within 30 s; after a SIGKILL of
``warmer up``, its children end on their own within seconds."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bench.layout import LayoutWriter
from tests.support.notifications import envelope, event
from tests.support.redisdbs import DB, shared_env
from tests.support.registry import free_port
from tests.support.sender import RegistryLikeSender
from worker.cli.demo.services import webhook_ready
from worker.cli.processes import wait_until
from worker.storage import paths

TOKEN = "shutdown-token"
#: What the issue allows for a clean stop.
STOP_SECONDS = 30
BROKER_DB = DB.SHUTDOWN_BROKER
#: Every process a test starts inherits it (orphans too): how the clean-up finds them.
_MARKER = "SHUTDOWN_TEST_DIR"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _descendants(pid: int) -> set[int]:
    seen: set[int] = set()
    todo = [pid]
    while todo:
        for child in _children(todo.pop()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; its parent reaps it


def _env(redis_proc: Any, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARMER_", "SENTRY_"))}
    # A DB of its own, emptied: no task another test left is handed to these workers.
    redis.Redis(host=redis_proc.host, port=redis_proc.port, db=BROKER_DB).flushdb()
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    return env | {
        **shared_env(redis_proc, broker=BROKER_DB),
        "WARMER_STORAGE_ROOT": str(root),
        "WARMER_WEBHOOK_TOKEN": TOKEN,
    }


def _started_in(directory: Path) -> list[int]:
    # Every process a test starts inherits its environment and working directory, orphans
    # included: found by either (redis-server rewrites the memory /proc shows as environ).
    marker = f"{_MARKER}={directory}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if marker in environ or cwd.startswith(str(directory)):
                found.append(int(entry.name))
    return found


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; whatever is left of them (orphans too) is killed afterwards."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for pid in _started_in(tmp_path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for proc in procs:
        proc.wait()


def _start(
    args: list[str], env: dict[str, str], log: Path, procs: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("warmer")), *args],
            env=env | {_MARKER: str(log.parent)},
            cwd=log.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    procs.append(proc)
    return proc


def _worker_ready(log: Path) -> bool:
    return " ready." in log.read_text(errors="replace")


def _all_gone(pids: set[int]) -> bool:
    return not any(_alive(p) for p in pids)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_warmer_up_and_everything_it_started(
    sig: signal.Signals,
    redis_proc: Any,
    tmp_path: Path,
    started: list[subprocess.Popen[bytes]],
) -> None:
    port = free_port()
    log = tmp_path / "up.log"
    up = _start(["up", "--port", str(port)], _env(redis_proc, tmp_path), log, started)
    wait_until(lambda: webhook_ready(f"http://127.0.0.1:{port}"), timeout=60, what="readyz")
    wait_until(lambda: _worker_ready(log), timeout=60, what="the worker to be ready")
    family = _descendants(up.pid)
    assert len(family) >= 3, family  # the worker, its pool, its beat
    up.send_signal(sig)
    wait_until(
        lambda: _all_gone({up.pid, *family}),
        timeout=STOP_SECONDS,
        what=f"warmer up and its {len(family)} processes to end after {sig.name}",
    )


@pytest.mark.parametrize("dev", [False, True], ids=["configured", "dev"])
def test_after_a_sigkill_of_warmer_up_its_children_end_on_their_own(
    dev: bool, redis_proc: Any, tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    log = tmp_path / "up.log"
    env = _env(redis_proc, tmp_path)
    args = ["up", "--port", str(port)]
    if dev:  # nobody answers at the configured URLs: --dev starts its own redis-server too
        dead = f"redis://127.0.0.1:{free_port()}"
        env |= {
            f"WARMER_{n}_URL": f"{dead}/{i}" for i, n in enumerate(("REDIS", "BROKER", "STATE"))
        }
        env.pop("WARMER_STORAGE_ROOT")
        env.pop("WARMER_WEBHOOK_TOKEN")
        args.append("--dev")
    up = _start(args, env, log, started)
    wait_until(lambda: _worker_ready(log), timeout=60, what="the worker to be ready")
    family = _descendants(up.pid)
    assert family
    up.kill()
    up.wait()
    wait_until(
        lambda: _all_gone(family),
        timeout=10,
        what="the children of a killed warmer up to end",
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_warmer_worker_with_its_pool(
    sig: signal.Signals,
    redis_proc: Any,
    tmp_path: Path,
    started: list[subprocess.Popen[bytes]],
) -> None:
    log = tmp_path / "worker.log"
    worker = _start(["worker", "--concurrency", "2"], _env(redis_proc, tmp_path), log, started)
    wait_until(lambda: _worker_ready(log), timeout=60, what="the worker to be ready")
    family = _descendants(worker.pid)
    assert len(family) >= 2, family
    worker.send_signal(sig)
    wait_until(
        lambda: _all_gone({worker.pid, *family}),
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
    hook = _start(args, _env(redis_proc, tmp_path), log, started)
    wait_until(lambda: webhook_ready(f"http://127.0.0.1:{port}"), timeout=60, what="readyz")
    family = _descendants(hook.pid)
    # --workers 2: two receiver processes under the one started (1: none, uvicorn serves in it).
    assert len(family) == (workers if workers > 1 else 0), family
    hook.send_signal(sig)
    wait_until(
        lambda: _all_gone(family) and (not _alive(hook.pid) or hook.poll() is not None),
        timeout=STOP_SECONDS,
        what=f"warmer webhook and its receivers to end after {sig.name}",
    )
    assert hook.wait() == 0, log.read_text()


def test_after_a_sigkill_of_warmer_webhook_its_receivers_end_on_their_own(
    redis_proc: Any, tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    args = ["webhook", "--port", str(port), "--workers", "2"]
    hook = _start(args, _env(redis_proc, tmp_path), tmp_path / "webhook.log", started)
    wait_until(lambda: webhook_ready(f"http://127.0.0.1:{port}"), timeout=60, what="readyz")
    family = _descendants(hook.pid)
    assert len(family) == 2, family
    hook.kill()
    hook.wait()
    wait_until(lambda: _all_gone(family), timeout=10, what="the receivers of a killed webhook")


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
    env = _env(redis_proc, tmp_path) | {
        "WARMER_STORAGE_ROOT": str(layout.store.root),
        "WARMER_SHUTDOWN_GRACE": "0.5",
        "WARMER_VISIBILITY_TIMEOUT": "2",
    }
    broker = redis.Redis.from_url(env["WARMER_BROKER_URL"])
    broker.flushdb()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    _start(["webhook", "--port", str(port)], env, tmp_path / "webhook.log", started)
    wait_until(lambda: webhook_ready(url), timeout=60, what="readyz")
    worker_args = ["worker", "--concurrency", "1", "--without-mingle", "--without-gossip"]
    first = _start(worker_args, env, tmp_path / "worker1.log", started)
    wait_until(lambda: _worker_ready(tmp_path / "worker1.log"), timeout=60, what="worker ready")
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
    _start(worker_args, env, tmp_path / "worker2.log", started)

    def warm() -> bool:
        return all(cache_redis.sismember("repository::team/app::blobs", b) for b in blobs)

    wait_until(warm, timeout=60, what="the returned task to warm the image")
    broker.flushdb()
