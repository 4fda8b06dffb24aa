"""Benchmark: the fan-out re-warm (``warmer rewarm --enqueue``) at a million links, beside the
in-process one, with the memory of the planner and of each worker process.

    python bench/fanout.py [--shapes 1000x100,100000x10] [--blobs 20000] [--workers 1,2]

For each shape (REPOSITORIES x LINKS over BLOBS distinct blobs, built once under
``$TMPDIR/warmer-bench/shape-RxL`` and reused, as ``bench/shapes.py`` does), in one run, cache
empty each time, page cache warm:

- ``warmer rewarm`` in-process: links/s and this process's peak RSS growth;
- the fan-out with ``warmer worker --pool prefork --concurrency N``: from sending
  ``warmer.rewarm`` to its summary, links/s, the tasks it sent, and the peak RSS (VmHWM) of
  the worker's main process and of each pool process (one of which ran the planner);
- the planner alone (``warmer.rewarm`` applied in a child process of its own, its tasks left
  in a broker DB that is then emptied): seconds and peak RSS.

The machine has 2 shared cores: with 2 pool processes, the planner, Redis and the workers
share them.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.rewarm import build_store
from bench.workers import fan_out
from worker.cache import BlobDescriptorCache
from worker.celeryapp.names import REWARM_TASK
from worker.cli.processes import throwaway_redis
from worker.core.blobservice import CachedBlobService
from worker.core.rewarm import rewarm
from worker.storage.filesystem import FilesystemStore

_PLANNER = """
import resource, sys, time
from tasks import worker_app
from bench.throwaway import warmer_settings
from pathlib import Path
app = worker_app(warmer_settings(int(sys.argv[1]), Path(sys.argv[2])))
started = time.perf_counter()
result = app.tasks[sys.argv[3]].apply().get()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(result["tasks"], time.perf_counter() - started, peak)
"""


def planner(port: int, root: Path) -> tuple[int, float, float]:
    """The planner alone, in a child process: tasks sent, seconds, peak RSS (MiB)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run(
        [sys.executable, "-c", _PLANNER, str(port), str(root), REWARM_TASK],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for db in (0, 1, 2):
        redis.Redis(port=port, db=db).flushdb()
    return int(out[0]), float(out[1]), int(out[2]) / 1024


def measure(root: Path, workers: list[int]) -> None:
    """Print every figure of one built store."""
    store = FilesystemStore(root)
    with throwaway_redis() as port:
        client = redis.Redis(port=port)
        service = CachedBlobService(BlobDescriptorCache(client), store)
        rewarm(service)  # the page cache warm for every run
        client.flushdb()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cold = rewarm(service)
        grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(
            f"  in-process rewarm, cold cache: {cold.blobs / cold.seconds:>9,.0f} links/s "
            f"({cold.blobs:,} in {cold.seconds:.1f} s), peak RSS grew {grew:.1f} MiB",
            flush=True,
        )
        tasks, seconds, mib = planner(port, root)
        print(f"  planner alone: {tasks:,} tasks sent in {seconds:.1f} s, peak RSS {mib:.0f} MiB")
        for n in workers:
            run = fan_out(port, root, n)
            rate = run.links / run.seconds
            pool = ", ".join(f"{v:.0f}" for v in run.pool_mib)
            print(
                f"  fan-out, {n} worker process{'es' if n > 1 else ''}: {rate:>9,.0f} links/s "
                f"({run.links:,} in {run.seconds:.1f} s, {run.tasks} tasks); "
                f"peak RSS: main {run.main_mib:.0f} MiB, pool processes {pool} MiB",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="1000x100,100000x10")
    parser.add_argument("--blobs", type=int, default=20_000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "warmer-bench")
    args = parser.parse_args()
    workers = [int(n) for n in args.workers.split(",")]
    print(f"python {sys.version.split()[0]}; {os.cpu_count()} cores")
    for shape in args.shapes.split(","):
        repos, links = (int(n) for n in shape.split("x"))
        root = args.dir / f"shape-{repos}x{links}"
        build_store(root, repos, links, args.blobs)
        print(
            f"\n{repos:,} repositories x {links:,} links ({repos * links:,}), {args.blobs:,} blobs"
        )
        measure(root, workers)


if __name__ == "__main__":
    main()
