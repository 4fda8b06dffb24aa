"""Child processes the warmer starts: a throwaway redis-server, and stopping a process group.

Used by ``warmer up --dev``, ``make demo`` and the benchmarks, so that each starts and stops
its helpers the same way and leaves nothing running.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import redis

from worker.errors import ConfigError

__all__ = ["free_port", "stop_group", "throwaway_redis"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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


@contextmanager
def throwaway_redis(*, directory: Path | None = None, extra: Sequence[str] = ()) -> Iterator[int]:
    """A redis-server on a free port of 127.0.0.1 that keeps nothing; yields its port."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ConfigError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    if directory is not None:
        args += ["--dir", str(directory)]
    proc = subprocess.Popen([*args, *extra], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise ConfigError("the throwaway redis-server did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)
