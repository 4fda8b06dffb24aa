"""A fan-out re-warm through a real ``warmer worker``, timed from sending ``warmer.rewarm`` to
its summary, with the peak memory of the worker's processes: what ``bench/rewarm.py`` and
``bench/fanout.py`` both measure."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import redis

from bench.throwaway import warmer_settings
from worker.celeryapp import create_app
from worker.celeryapp.names import REWARM_TASK
from worker.cli.processes import stop_group, wait_until
from worker.state import StateStore

__all__ = ["FanOut", "children", "fan_out", "peak_kib"]


class FanOut(NamedTuple):
    """One fan-out run: links warmed, seconds to the summary, tasks sent, and the peak RSS of
    the worker's main process and of each pool process (MiB)."""

    links: int
    seconds: float
    tasks: int
    main_mib: float
    pool_mib: list[float]


def peak_kib(pid: int) -> int:
    """A process's peak resident set (VmHWM), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    """A process's children (its pool processes, for a prefork worker)."""
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(p) for p in f.read().split()]
    return found


def fan_out(port: int, root: Path, concurrency: int) -> FanOut:
    """Cold re-warm through a prefork worker of ``concurrency`` processes."""
    settings = warmer_settings(port, root)
    for db in (0, 1, 2):
        redis.Redis(port=port, db=db).flushdb()
    state = StateStore(redis.Redis(port=port, db=2))
    app = create_app(settings)
    command = [str(Path(sys.executable).with_name("warmer")), "worker", "--pool", "prefork"]
    command += ["--concurrency", str(concurrency), "--without-mingle", "--without-gossip"]
    worker = subprocess.Popen(
        [*command, "--loglevel", "WARNING"],
        env={**os.environ, **settings.environment()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: app.control.ping(timeout=0.5), timeout=60, what="the worker to start")
        started = time.perf_counter()
        app.send_task(REWARM_TASK)
        summary = wait_until(lambda: state.last("rewarm"), timeout=7200, what="the re-warm")
        elapsed = time.perf_counter() - started
        pool = {pid: peak_kib(pid) for pid in children(worker.pid)}
        main_kib = peak_kib(worker.pid)
    finally:
        stop_group(worker, timeout=30)
    return FanOut(
        links=int(summary["blobs"]),
        seconds=elapsed,
        tasks=int(summary.get("tasks", 0)),
        main_mib=main_kib / 1024,
        pool_mib=sorted(v / 1024 for v in pool.values()),
    )
