"""Warmer processes a shutdown test starts, and the process trees they leave: each started in a
session of its own with a marker in its environment, so the clean-up finds every one, orphans
too (tests/integration/test_shutdown.py, tests/e2e/test_up_shutdown.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from tests.support.redisdbs import DB, shared_env

__all__ = [
    "STOP_SECONDS",
    "TOKEN",
    "alive",
    "all_gone",
    "descendants",
    "shutdown_env",
    "start",
    "started_processes",
    "worker_ready",
]

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


def descendants(pid: int) -> set[int]:
    """Every live process under ``pid``: children, theirs, and so on."""
    seen: set[int] = set()
    todo = [pid]
    while todo:
        for child in _children(todo.pop()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended; its parent reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def all_gone(pids: set[int]) -> bool:
    """Whether none of ``pids`` runs."""
    return not any(alive(p) for p in pids)


def shutdown_env(redis_proc: Any, tmp_path: Path) -> dict[str, str]:
    """The environment of a warmer under test: the shared server, a broker DB of its own."""
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


@contextlib.contextmanager
def started_processes(directory: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts under ``directory``; whatever is left of them (orphans too) is
    killed afterwards."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for pid in _started_in(directory):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in procs:
            proc.wait()


def start(
    args: list[str], env: dict[str, str], log: Path, procs: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    """``warmer ARGS`` in a session of its own, marked, in ``log``'s folder, output to ``log``."""
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


def worker_ready(log: Path) -> bool:
    """Whether the Celery worker writing ``log`` said it is ready."""
    return " ready." in log.read_text(errors="replace")
