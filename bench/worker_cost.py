"""Benchmark: what the worker spends on each pushed event, in-process and under Celery.

    python bench/worker_cost.py [--events 20000] [--batch 20] [--repos 10] [--profile N]
                                [--celery]

Starts its own redis-server (cache, broker and state DBs) and a filesystem store of one blob
per event, linked into ``--repos`` repositories in turn, as ``bench/events.py`` pushes them.
Then, in batches of ``--batch`` blob pushes (what the receiver publishes under load):

- in-process: each batch is tracked in the ledger as the receiver tracks it, then handed to
  the ``warmer.events`` task's own body (no Celery): microseconds per event, and Redis round
  trips per batch (counted at the client: one per command or pipeline sent). ``--profile N``
  prints cProfile's N costliest functions of the same loop;
- ``--celery``: the same batches published as tasks to a ``warmer worker`` (prefork 2), and as
  many no-op tasks to a bare Celery worker (prefork 2, same broker): tasks/s of both, events/s
  of the warmer, in one run.

Counts, not seconds, are what other work on the machine leaves alone: round trips per batch
are exact, and the time per event is best read against another checkout measured in the same
session (``PYTHONPATH=<checkout> python bench/worker_cost.py``).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import redis

ROOT = Path(__file__).resolve().parent.parent
# After PYTHONPATH: another checkout given there is the one measured. Its bench/ and worker/
# then serve this script too: it needs bench/layout.py and worker.cli.processes.wait_until,
# so it measures checkouts from the one that moved them there onwards.
if os.environ.get("PYTHONPATH"):
    sys.path.append(str(ROOT))
else:
    sys.path.insert(0, str(ROOT))

from bench.layout import LayoutWriter  # noqa: E402
from worker.cache import BlobDescriptorCache  # noqa: E402
from worker.cli.processes import background, throwaway_redis, wait_until  # noqa: E402
from worker.core.blobservice import CachedBlobService  # noqa: E402
from worker.registry.events import Event, Kind, Message  # noqa: E402
from worker.state import StateStore  # noqa: E402
from worker.state.figures import Figures  # noqa: E402
from worker.storage.filesystem import FilesystemStore  # noqa: E402

Body = Callable[[list[Message], CachedBlobService, StateStore], Any]


def task_body() -> Body:
    """The ``warmer.events`` task's body of the checkout on the path."""
    try:
        from tasks.events import apply_events  # noqa: PLC0415 (absent before this bench)
    except ImportError:  # a checkout whose task spells its body inline: the same, spelled here
        return _inline_body()
    return lambda messages, service, state: apply_events(messages, service, state, time.time())


def _inline_body() -> Body:
    # The checkout's own modules, as its task imports them; its settle took a callback.
    from worker.core.pipeline import process  # noqa: PLC0415
    from worker.state.figures import record  # noqa: PLC0415
    from worker.state.ledger import parse_messages  # noqa: PLC0415
    from worker.state.ledger import settle as settle_  # noqa: PLC0415

    settle: Any = settle_

    def body(messages: list[Message], service: CachedBlobService, state: StateStore) -> Any:
        batch, bad = parse_messages(messages)
        result = process(batch, service, state)

        def record_figures(dead_lettered: int) -> None:
            result.figures.dead_lettered = dead_lettered
            record(state, result.figures, result.repositories)

        settle(
            state,
            batch,
            retry=result.retry,
            dead=result.dead,
            bad=bad,
            now=time.time(),
            before_release=lambda settled: record_figures(settled.dead_lettered),
        )
        return result.as_dict()

    return body


class RoundTrips:
    """Counts what redis-py sends: one packed send is one round trip (a pipeline included)."""

    def __init__(self) -> None:
        self.count = 0
        connection = redis.connection.AbstractConnection
        original: Callable[..., None] = connection.send_packed_command

        def counted(conn: Any, command: Any, check_health: bool = True) -> None:
            self.count += 1
            original(conn, command, check_health)

        connection.send_packed_command = counted  # type: ignore[method-assign]


def make_store(root: Path, events: int, repos: int) -> list[tuple[str, str]]:
    writer = LayoutWriter(root)
    blobs = []
    for i in range(events):
        digest = writer.blob(f"worker cost blob {i}".encode())
        repo = f"app{i % repos}"
        writer.link(repo, digest)
        blobs.append((repo, digest))
    return blobs


def batches_of(blobs: list[tuple[str, str]], size: int) -> list[list[Message]]:
    messages = [Event(str(uuid.uuid4()), Kind.WARM_BLOB, r, d).as_message() for r, d in blobs]
    return [messages[i : i + size] for i in range(0, len(messages), size)]


def in_process(
    port: int, root: Path, batches: list[list[Message]], profile: int, trips: RoundTrips
) -> None:
    cache = redis.Redis(port=port, db=0)
    state_client = redis.Redis(port=port, db=2)
    cache.flushdb()
    state_client.flushdb()
    store = FilesystemStore(root)
    blob_cache = BlobDescriptorCache(cache)
    state = StateStore(state_client)
    body = task_body()
    events = sum(len(b) for b in batches)
    for batch in batches:  # the receiver's part, not measured
        state.track(batch, time.time() + 60)
    trips.count = 0
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    cpu = time.process_time()
    if profiler is not None:
        profiler.enable()
    for batch in batches:
        body(batch, CachedBlobService(blob_cache, store, Figures()), state)
    if profiler is not None:
        profiler.disable()
    cpu = time.process_time() - cpu
    elapsed = time.perf_counter() - started
    round_trips = trips.count
    warmed = sum(cache.scard(k) for k in cache.scan_iter("repository::*::blobs"))
    pending = state.pending_count()
    if warmed != events or pending:
        raise SystemExit(f"in-process: {warmed} of {events} warm, {pending} pending")
    print(
        f"in-process: {events} events in {len(batches)} batches of {len(batches[0])}: "
        f"{elapsed / events * 1e6:.1f} us/event wall, {cpu / events * 1e6:.1f} us/event CPU, "
        f"{round_trips / len(batches):.1f} Redis round trips/batch"
    )
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(profile)
        print(out.getvalue())


class Drain(NamedTuple):
    """A worker's drain of its queue, from its first task done to its last: tasks done, and
    what they cost in wall seconds and in CPU seconds (the worker's processes, Redis's)."""

    tasks: float
    seconds: float
    cpu: float
    redis_cpu: float


def _session_cpu(session: int) -> float:
    # CPU seconds of every live process of a session (a prefork worker and its children).
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # after ")": state, ppid, pgrp, session, ...
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def _redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _drain(
    left: Callable[[], int], total: int, per_task: int, session: int, client: redis.Redis
) -> Drain:
    """Wait until ``left()`` (events or tasks not done) is 0, measuring from the first seen
    done: a worker's start, imports and all, is not its rate."""
    first = wait_until(
        lambda: total - left(), timeout=600, what="the worker to start", interval=0.002
    )
    started, cpu, redis_cpu = time.perf_counter(), _session_cpu(session), _redis_cpu(client)
    wait_until(lambda: left() == 0, timeout=600, what="the worker to finish", interval=0.005)
    return Drain(
        (total - first) / per_task,
        time.perf_counter() - started,
        _session_cpu(session) - cpu,
        _redis_cpu(client) - redis_cpu,
    )


def under_celery(port: int, root: Path, batches: list[list[Message]], work: Path) -> None:
    from tasks import worker_app  # noqa: PLC0415
    from worker.config.settings import load_settings  # noqa: PLC0415

    base = f"redis://127.0.0.1:{port}"
    env = {
        "WARMER_REDIS_URL": f"{base}/0",
        "WARMER_BROKER_URL": f"{base}/1",
        "WARMER_STATE_URL": f"{base}/2",
        "WARMER_STORAGE_ROOT": str(root),
        "WARMER_SKIP_EVICTION_CHECK": "1",
    }
    cache = redis.Redis(port=port, db=0)
    broker = redis.Redis(port=port, db=1)
    state_client = redis.Redis(port=port, db=2)
    for client in (cache, broker, state_client):
        client.flushdb()
    app = worker_app(load_settings(**{k[len("WARMER_") :].lower(): v for k, v in env.items()}))
    state = StateStore(state_client)
    for batch in batches:  # as the receiver does: tracked, then published
        state.track(batch, time.time() + 300)
        app.context.publish(batch)
    events = sum(len(b) for b in batches)
    size = len(batches[0])
    warmer = str(Path(sys.executable).with_name("warmer"))
    args = ["worker", "-P", "prefork", "-c", "2", "--without-mingle", "--without-gossip"]
    with background([warmer, *args, "-l", "WARNING"], env, work / "worker.log") as proc:
        drained = _drain(state.pending_count, events, size, proc.pid, cache)
    warmed = sum(cache.scard(k) for k in cache.scan_iter("repository::*::blobs"))
    if warmed != events:
        raise SystemExit(f"celery: {warmed} of {events} warm")
    app.close()
    noop = noop_drain(f"{base}/3", len(batches), work)
    for name, d in (("warmer.events", drained), ("no-op", noop)):
        print(
            f"celery (prefork 2), {name + ':':14} {d.tasks / d.seconds:6,.0f} tasks/s; CPU per "
            f"task: worker {d.cpu / d.tasks * 1e3:.2f} ms, Redis {d.redis_cpu / d.tasks * 1e3:.2f} "
            f"ms ({d.tasks:.0f} tasks)"
        )
    cpu = (drained.cpu + drained.redis_cpu) / drained.tasks
    noop_cpu = (noop.cpu + noop.redis_cpu) / noop.tasks
    print(
        f"celery: {drained.tasks / drained.seconds * size:,.0f} events/s, "
        f"{drained.tasks / drained.seconds / (noop.tasks / noop.seconds):.2f}x the no-op task "
        f"rate; worker + Redis CPU {cpu / size * 1e6:.0f} us/event, a task costs "
        f"{cpu / noop_cpu:.1f} no-op tasks"
    )


def noop_drain(broker: str, tasks: int, work: Path) -> Drain:
    """A bare Celery worker (prefork 2) draining ``tasks`` no-op tasks."""
    os.environ["NOOP_BROKER_URL"] = broker
    from bench.noop_app import app, noop  # noqa: PLC0415 (reads NOOP_BROKER_URL)

    for _ in range(tasks):
        noop.delay()
    client = redis.Redis.from_url(broker)
    env = {"NOOP_BROKER_URL": broker, "PYTHONPATH": str(ROOT)}
    args = ["-A", "bench.noop_app", "worker", "-P", "prefork", "-c", "2"]
    args += ["--without-mingle", "--without-gossip", "-l", "WARNING"]
    with background([sys.executable, "-m", "celery", *args], env, work / "noop.log") as proc:
        drained = _drain(
            lambda: client.llen("celery") + client.hlen("unacked"), tasks, 1, proc.pid, client
        )
    app.close()
    return drained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--repos", type=int, default=10)
    parser.add_argument("--profile", type=int, default=0, help="print N costliest functions")
    parser.add_argument("--celery", action="store_true", help="also under a Celery worker")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="warmer-bench-worker-"))
    blobs = make_store(work / "root", args.events, args.repos)
    batches = batches_of(blobs, args.batch)
    trips = RoundTrips()
    print(f"checkout: {Path(sys.modules['worker'].__file__ or '').parent.parent}")
    with throwaway_redis() as port:
        in_process(port, work / "root", batches, args.profile, trips)
        if args.celery:
            under_celery(port, work / "root", batches, work)


if __name__ == "__main__":
    main()
