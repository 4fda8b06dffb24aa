"""Clean shutdown of the whole ``warmer up``, with real processes: SIGTERM or SIGINT stops it
with everything it started, within 30 s; after a SIGKILL, its children end on their own within
seconds (configured, and ``--dev`` with its own redis-server). ``warmer worker``'s and
``warmer webhook``'s: tests/integration/test_shutdown.py."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processtree import (
    STOP_SECONDS,
    all_gone,
    descendants,
    shutdown_env,
    start,
    started_processes,
    worker_ready,
)
from tests.support.registry import free_port
from worker.cli.demo.services import webhook_ready
from worker.cli.processes import wait_until


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; whatever is left of them (orphans too) is killed afterwards."""
    with started_processes(tmp_path) as procs:
        yield procs


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_warmer_up_and_everything_it_started(
    sig: signal.Signals,
    redis_proc: Any,
    tmp_path: Path,
    started: list[subprocess.Popen[bytes]],
) -> None:
    port = free_port()
    log = tmp_path / "up.log"
    up = start(["up", "--port", str(port)], shutdown_env(redis_proc, tmp_path), log, started)
    wait_until(lambda: webhook_ready(f"http://127.0.0.1:{port}"), timeout=60, what="readyz")
    wait_until(lambda: worker_ready(log), timeout=60, what="the worker to be ready")
    family = descendants(up.pid)
    assert len(family) >= 3, family  # the worker, its pool, its beat
    up.send_signal(sig)
    wait_until(
        lambda: all_gone({up.pid, *family}),
        timeout=STOP_SECONDS,
        what=f"warmer up and its {len(family)} processes to end after {sig.name}",
    )


@pytest.mark.parametrize("dev", [False, True], ids=["configured", "dev"])
def test_after_a_sigkill_of_warmer_up_its_children_end_on_their_own(
    dev: bool, redis_proc: Any, tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    log = tmp_path / "up.log"
    env = shutdown_env(redis_proc, tmp_path)
    args = ["up", "--port", str(port)]
    if dev:  # nobody answers at the configured URLs: --dev starts its own redis-server too
        dead = f"redis://127.0.0.1:{free_port()}"
        env |= {
            f"WARMER_{n}_URL": f"{dead}/{i}" for i, n in enumerate(("REDIS", "BROKER", "STATE"))
        }
        env.pop("WARMER_STORAGE_ROOT")
        env.pop("WARMER_WEBHOOK_TOKEN")
        args.append("--dev")
    up = start(args, env, log, started)
    wait_until(lambda: worker_ready(log), timeout=60, what="the worker to be ready")
    family = descendants(up.pid)
    assert family
    up.kill()
    up.wait()
    wait_until(
        lambda: all_gone(family),
        timeout=10,
        what="the children of a killed warmer up to end",
    )
