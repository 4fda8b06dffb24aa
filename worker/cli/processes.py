"""Child processes the warmer starts: a throwaway redis-server, stopping a process group, and
waiting for one to be ready.

Used by ``warmer up --dev``, ``make demo``, the benchmarks and the tests, so that each starts,
waits for and stops its helpers the same way and leaves nothing running.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Final, TypeVar

import redis

from worker.errors import ConfigError

__all__ = [
    "background",
    "die_with_parent",
    "free_port",
    "free_ports",
    "stop_group",
    "stop_leader_then_group",
    "throwaway_redis",
    "wait_until",
]

T = TypeVar("T")

_PR_SET_PDEATHSIG: Final = 1  # from <linux/prctl.h>


def wait_until(
    predicate: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.05
) -> T:
    """The first true value of ``predicate()``, asked every ``interval`` seconds until then
    (never ``None``: a predicate of ``X | None`` gives an ``X``).

    :raises TimeoutError: naming ``what`` and ``timeout`` when no true value came within
        ``timeout`` seconds. What ``predicate`` raises goes through: a predicate that must
        outlast a failure (a server not listening yet) catches it and returns a false value.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        # Never past the deadline: the last try is at it, not an interval after it.
        time.sleep(min(interval, left))


def die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` for a child that must not outlive this process, even after a SIGKILL.

    On Linux the kernel sends the child SIGTERM when this process dies (``PR_SET_PDEATHSIG``):
    the child's own clean shutdown runs. Elsewhere it does nothing.
    """
    parent = os.getpid()
    if not sys.platform.startswith("linux"):
        return lambda: None
    # Resolved here, before the fork: the child runs only a system call, no loader, no lock
    # (why the preexec_fn below is safe although this process has threads).
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def _is_free(port: int) -> bool:
    # As redis-server binds: a port left in TIME_WAIT by the last run's clients is free to it.
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """``count`` different TCP ports on 127.0.0.1 that nothing listens on right now.

    All are held at once while chosen: two calls of :func:`free_port` in a row can return the
    same port (seen: a registry's debug server took the port of its own listener).
    """
    with ExitStack() as held:
        ports = []
        for _ in range(count):
            s = held.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Stop a process started with ``start_new_session=True`` and all its children."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def stop_leader_then_group(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Stop a process that stops its own children (a Celery worker: pool, embedded beat).

    SIGTERM to the leader alone, so its clean shutdown runs in order (a pool child signalled
    directly would drop the task it runs); after ``timeout``, SIGKILL whatever of its group is
    left.
    """
    if proc.poll() is None:
        proc.terminate()
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    with suppress(ProcessLookupError):  # no such group: everything stopped by itself
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextmanager
def throwaway_redis(
    *, directory: Path | None = None, extra: Sequence[str] = (), port: int | None = None
) -> Iterator[int]:
    """A redis-server on 127.0.0.1 that keeps nothing; yields its port: ``port`` when it is
    free, else a free one."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ConfigError("redis-server is not installed (apt-get install redis-server)")
    port = port if port is not None and _is_free(port) else free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    if directory is not None:
        args += ["--dir", str(directory)]
    # A session of its own: a Ctrl-C in the terminal reaches the warmer, which drains its work
    # and stops this server last, not this server first; it still dies with its parent.
    proc = subprocess.Popen(
        [*args, *extra],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=die_with_parent(),  # noqa: PLW1509 (a system call only, see there)
    )
    client = redis.Redis(port=port)
    failed = "the throwaway redis-server did not start"

    def started() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            if proc.poll() is not None:  # it exited: no use waiting
                raise ConfigError(failed) from None
            return False

    try:
        try:
            wait_until(started, timeout=10, what="the throwaway redis-server")
        except TimeoutError:
            raise ConfigError(failed) from None
        yield port
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


@contextmanager
def background(
    args: Sequence[str], env: Mapping[str, str], log: Path, *, timeout: float = 20
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` in a session of its own, with ``env`` over this process's environment and
    its output appended to ``log``; stop it and its children afterwards (:func:`stop_group`)."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(args),
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        stop_group(proc, timeout=timeout)
