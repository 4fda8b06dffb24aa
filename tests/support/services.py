"""The warmer's own processes for the tests: the demo's helpers, the receiver and a worker
together, and one CLI run as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from worker.cli.demo.registry import free_port
from worker.cli.demo.services import warmer_process, webhook_ready
from worker.cli.processes import wait_until

__all__ = ["run_warmer_json", "running_warmer", "warmer_process", "webhook_ready"]


def run_warmer_json(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``warmer ARGS --json`` to the end; its JSON line (the last), or fail with stderr.

    A state or broker Redis the caller does not name is none that answers (a closed port), never
    the default localhost:6379 of the machine running the tests: rewarm and reconcile record
    their summary there when it answers, and a write notes itself in it.
    """
    warmer = str(Path(sys.executable).with_name("warmer"))
    nowhere = dict.fromkeys(("WARMER_STATE_URL", "WARMER_BROKER_URL"), "redis://127.0.0.1:1/0")
    proc = subprocess.run(
        [warmer, *args, "--json"],
        env=nowhere | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@contextmanager
def running_warmer(
    env: dict[str, str], workdir: Path, *, worker_args: Sequence[str] = ()
) -> Iterator[str]:
    """``warmer webhook`` and ``warmer worker`` as a user starts them, on a free port; yields
    the receiver's URL once it is ready, and stops both afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    worker = ["worker", *worker_args, "--pool", "solo", "--without-mingle", "--without-gossip"]
    with (
        warmer_process(["webhook", "--port", str(port)], env, workdir / "webhook.log"),
        warmer_process(worker, env, workdir / "worker.log"),
    ):
        wait_until(lambda: webhook_ready(url), timeout=30, what="the warmer's webhook /readyz")
        yield url
