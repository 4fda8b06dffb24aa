"""Benchmark: registry notifications to a warm cache, beside Celery's no-op task rate.

    python bench/events.py [--events 6000] [--concurrency 32] [--workers 1] [--rate 100]
                           [--seconds 10] [--sweep 1,2,4,8,16,32,64,128 --plot PNG]
                           [--sweep-rounds 1]

Starts its own redis-server (cache, broker and state DBs), ``warmer webhook`` (``--workers``
receiver processes) and ``warmer worker`` (prefork, 2 processes), and a store of blobs; one push
is warm before anything is measured (the worker has started). Then, in
links of one blob each, one event per request (as a registry sends them):

- pushes: EVENTS blob pushes from CONCURRENCY connections of ``wrk`` (bench/events.lua), every
  event with an id and a blob of its own; events/s from the first request until every accepted
  event's blob is in the cache and the ledger holds nothing pending;
- pulls: EVENTS blob pulls the same way; events/s until the access figures count every one;
- latency: RATE push events/s for SECONDS (this script's own client); for each event the time
  from its request to its blob in the cache (polled every 2 ms): p50 and p99;
- baseline: the same machine's Celery draining no-op tasks (prefork 2, same broker), timed from
  its first task taken (its start-up is no part of its rate, as the warmer's is not); measured
  before the warmer starts and after it stopped, the mean of both is the baseline.

With pushes and pulls it prints where the CPU went: microseconds per event of the receiver's
processes, the worker's, Redis's and wrk's (from /proc and ``INFO cpu``: read against each
other, they hold when the machine's speed drifts between runs), and for pushes the events a
task carried (task messages counted as LPUSH calls on the broker).

``--sweep`` measures pushes at each number of connections and plots events/s against them
beside the no-op rate (needs matplotlib: ``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import NamedTuple

import httpx2
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.layout import LayoutWriter  # noqa: E402
from bench.throwaway import warmer_settings  # noqa: E402
from worker.cli.processes import (  # noqa: E402
    background,
    free_port,
    throwaway_redis,
    wait_until,
)

TOKEN = "bench-token"
REPOS = 10
LUA = Path(__file__).with_name("events.lua")
SLACK = 1024


def _body(repo: str, digest: str) -> bytes:
    return json.dumps(
        {
            "events": [
                {
                    "id": str(uuid.uuid4()),
                    "timestamp": "2026-11-29T07:18:44.169Z",
                    "action": "push",
                    "target": {
                        "mediaType": "application/octet-stream",
                        "size": 10,
                        "digest": digest,
                        "length": 10,
                        "repository": repo,
                        "url": f"http://reg/v2/{repo}/blobs/{digest}",
                    },
                    "request": {"id": "r", "method": "PUT", "useragent": "bench"},
                    "actor": {},
                    "source": {"addr": "bench:5000"},
                }
            ]
        }
    ).encode()


HEADERS = {
    "content-type": "application/vnd.docker.distribution.events.v1+json",
    "authorization": f"Bearer {TOKEN}",
}


async def _send(client: httpx2.AsyncClient, url: str, body: bytes) -> None:
    while True:  # as a registry does: the same event again until it is taken
        response = await client.post(url, content=body, headers=HEADERS)
        if response.status_code < 300:
            return
        await asyncio.sleep(0.05)


def _warmed(cache: redis.Redis) -> int:
    return sum(cache.scard(f"repository::app{r}::blobs") for r in range(REPOS))


def _pulls(state: redis.Redis) -> int:
    return sum(int(v) for v in state.hvals("warmer:pulls"))


def _layout(root: Path, count: int) -> list[tuple[str, str]]:
    """A store of ``count`` blobs, each linked into one of the REPOS repositories in turn."""
    writer = LayoutWriter(root)
    blobs = []
    for i in range(count):
        digest = writer.blob(f"event blob {i}".encode())
        writer.link(f"app{i % REPOS}", digest)
        blobs.append((f"app{i % REPOS}", digest))
    return blobs


def _warm_up(url: str, blob: tuple[str, str], cache: redis.Redis, state: redis.Redis) -> None:
    # The worker starts beside the receiver: one push warm (and settled) before anything is
    # measured, or its start-up (imports, connections) runs during the first measure.
    httpx2.post(url, content=_body(*blob), headers=HEADERS, timeout=30)
    wait_until(
        lambda: (
            bool(cache.sismember(f"repository::{blob[0]}::blobs", blob[1]))
            and state.zcard("warmer:pending") == 0
        ),
        timeout=60,
        what="the worker's first task",
        interval=0.02,
    )


class Run(NamedTuple):
    """One wrk measure: events/s, CPU microseconds per event by process, events per task."""

    rate: float
    cpu_us: dict[str, float]
    per_task: float


def _tasks(client: redis.Redis) -> int:
    # Every task message is one LPUSH onto the queue (kombu's Redis transport); nothing else
    # of the warmer's pushes to a list but dead letters, which a benchmark run makes none of.
    return int(client.info("commandstats").get("cmdstat_lpush", {}).get("calls", 0))


def _group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) of every live process in process group ``pgid``."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[2]) == pgid:  # fields from the state on: pgrp is the third
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _cpu(groups: dict[str, int], client: redis.Redis) -> dict[str, float]:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        **{name: _group_cpu(pgid) for name, pgid in groups.items()},
        "redis": _redis_cpu(client),
        "wrk": children.ru_utime + children.ru_stime,  # the one child that ends in a run
    }


def wrk_throughput(
    url: str,
    kind: str,
    digests: Path,
    events: int,
    connections: int,
    *,
    duration: float,
    cache: redis.Redis,
    state: redis.Redis,
    groups: dict[str, int],
) -> Run:
    """Events/s from wrk's first request until every accepted event has reached the cache
    (pushes: its blob is there, nothing pending in the ledger) or the access figures (pulls),
    and the CPU each process group (and Redis, and wrk) spent per event meanwhile."""
    cache.flushdb()  # every push then adds one blob: the count says what was warmed
    pulls_before = _pulls(state)
    threads = min(2, connections)
    per_thread = math.ceil(events / threads)
    # Bounded: each thread stops sending after per_thread answers, and wrk itself after
    # --duration (wrk waits that long even when its threads stopped sooner: the end of the
    # run is when the last accepted event arrived, found by polling).
    # fmt: off
    args = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s",
            "--timeout", "10s", "-s", str(LUA), url, "--", kind, str(digests), TOKEN,
            str(per_thread), uuid.uuid4().hex[:12], str(threads)]
    # fmt: on

    def arrived() -> int:
        if kind == "pull":
            return _pulls(state) - pulls_before
        return _warmed(cache) if state.zcard("warmer:pending") == 0 else 0

    samples: list[tuple[float, int]] = []
    cpu_before, tasks_before = _cpu(groups, cache), _tasks(cache)
    started = time.perf_counter()
    with subprocess.Popen(args, stdout=subprocess.PIPE, text=True) as proc:
        while proc.poll() is None:
            samples.append((time.perf_counter(), arrived()))
            time.sleep(0.005)
        report = json.loads((proc.stdout.read() if proc.stdout else "").strip().splitlines()[-1])
    if report["refused"] or report["errors"]:
        print(f"wrk: {report}", file=sys.stderr)
    accepted = int(report["answered"]) - int(report["refused"])

    def sampled() -> int:
        samples.append((time.perf_counter(), arrived()))
        return samples[-1][1]

    # The stragglers: sampled on until every accepted event has arrived.
    if not samples or samples[-1][1] < accepted:
        wait_until(
            lambda: sampled() >= accepted,
            timeout=60,
            what=f"{accepted} {kind} events to arrive",
            interval=0.005,
        )
    cpu_after, tasks = _cpu(groups, cache), _tasks(cache) - tasks_before
    last = next(t for t, count in samples if count >= accepted)
    per_event = {k: (cpu_after[k] - cpu_before[k]) / accepted * 1e6 for k in cpu_after}
    return Run(accepted / (last - started), per_event, accepted / tasks if tasks else math.inf)


async def latency(
    url: str, blobs: list[tuple[str, str]], rate: float, cache: redis.Redis
) -> list[float]:
    sent: dict[tuple[str, str], float] = {}
    seen: dict[tuple[str, str], float] = {}

    async def poll() -> None:
        while len(seen) < len(blobs):
            waiting = [b for b in sent if b not in seen]
            if waiting:
                pipe = cache.pipeline(transaction=False)
                for repo, digest in waiting:
                    pipe.sismember(f"repository::{repo}::blobs", digest)
                now = time.perf_counter()
                for item, hit in zip(waiting, pipe.execute(), strict=True):
                    if hit:
                        seen[item] = now
            await asyncio.sleep(0.002)

    poller = asyncio.create_task(poll())
    async with httpx2.AsyncClient(timeout=30) as client:
        start = time.perf_counter()
        tasks = []
        for i, item in enumerate(blobs):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            sent[item] = time.perf_counter()
            tasks.append(asyncio.create_task(_send(client, url, _body(*item))))
        await asyncio.gather(*tasks)
    await asyncio.wait_for(poller, 60)
    return [(seen[b] - sent[b]) * 1000 for b in blobs]


def noop_rate(broker: str, tasks: int, work: Path) -> float:
    env = {"NOOP_BROKER_URL": broker, "PYTHONPATH": str(ROOT)}
    os.environ["NOOP_BROKER_URL"] = broker
    # Deferred: the module reads NOOP_BROKER_URL, set just above, when it is imported.
    from bench.noop_app import app, noop  # noqa: PLC0415

    for _ in range(tasks):
        noop.delay()
    client = redis.Redis.from_url(broker)
    with background(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.noop_app",
            "worker",
            "-P",
            "prefork",
            "-c",
            "2",
            "--without-mingle",
            "--without-gossip",
            "-l",
            "WARNING",
        ],
        env,
        work / "noop.log",
    ):
        # Timed from the first task taken, not from the start: the worker's start-up (imports,
        # forking its pool) is no part of its task rate, and the warmer's is left out the same
        # way (a push is warmed before its measure).
        wait_until(
            lambda: client.llen("celery") < tasks,
            timeout=60,
            what="the first no-op task taken",
            interval=0.02,
        )
        started, left = time.perf_counter(), int(client.llen("celery"))
        wait_until(
            lambda: client.llen("celery") == 0 and client.hlen("unacked") == 0,
            timeout=300,
            what="no-op tasks drained",
            interval=0.02,
        )
        elapsed = time.perf_counter() - started
    app.close()
    return left / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="receiver processes")
    parser.add_argument("--duration", type=float, default=8, help="wrk's bound, seconds")
    parser.add_argument("--sweep", default="", help="connection counts, e.g. 1,2,4,8")
    parser.add_argument("--sweep-rounds", type=int, default=1, help="the sweep this many times")
    parser.add_argument("--plot", type=Path, default=ROOT / "bench" / "events.png")
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--noop-tasks", type=int, default=5000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="warmer-bench-events-"))
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    latency_n = int(args.rate * args.seconds)
    # wrk's threads stop after their count, but answers already under way still arrive: a
    # slack of blobs keeps every pushed event on a blob of its own.
    pushed_n = args.events + SLACK
    blobs = _layout(work / "root", pushed_n + latency_n + 1)
    warm_up = blobs.pop()
    digests = work / "digests.txt"
    digests.write_text("".join(f"{r} {d}\n" for r, d in blobs[:pushed_n]))
    sweep = [int(c) for c in args.sweep.split(",") if c]
    with throwaway_redis() as rport:
        # The no-op rate before and after the warmer's measures, their mean the baseline: the
        # machine's speed drifts over a run's minute (shared cores), and both ends see it.
        before = noop_rate(f"redis://127.0.0.1:{rport}/3", args.noop_tasks, work)
        cache = redis.Redis(port=rport, db=0)
        state = redis.Redis(port=rport, db=2)
        base = f"redis://127.0.0.1:{rport}"
        env = warmer_settings(rport, work / "root", webhook_token=TOKEN).environment()
        port = free_port()
        url = f"http://127.0.0.1:{port}/events"
        warmer = str(Path(sys.executable).with_name("warmer"))
        with (
            background(
                [warmer, "webhook", "--port", str(port)]
                + (["--workers", str(args.workers)] if args.workers != 1 else []),
                env,
                work / "webhook.log",
            ) as receiver,
            background(
                [
                    warmer,
                    "worker",
                    "-P",
                    "prefork",
                    "-c",
                    "2",
                    "--without-mingle",
                    "--without-gossip",
                    "-l",
                    "WARNING",
                ],
                env,
                work / "worker.log",
            ) as worker,
        ):
            groups = {"receiver": receiver.pid, "worker": worker.pid}  # each leads its group
            wait_until(
                lambda: _ready(port), timeout=30, what="warmer webhook /readyz", interval=0.02
            )
            _warm_up(url, warm_up, cache, state)
            measure = {
                kind: wrk_throughput(
                    url,
                    kind,
                    digests,
                    args.events,
                    args.concurrency,
                    duration=args.duration,
                    cache=cache,
                    state=state,
                    groups=groups,
                )
                for kind in ("push", "pull")
            }
            # Rounds of the whole sweep, one after the other: the spread between them shows
            # what the machine's drift does to one point.
            curve = [
                (
                    round_,
                    c,
                    wrk_throughput(
                        url,
                        "push",
                        digests,
                        args.events,
                        c,
                        duration=args.duration,
                        cache=cache,
                        state=state,
                        groups=groups,
                    ),
                )
                for round_ in range(1, args.sweep_rounds + 1)
                for c in sweep
            ]
            cache.flushdb()
            times = asyncio.run(latency(url, blobs[pushed_n:], args.rate, cache))
        after = noop_rate(f"{base}/3", args.noop_tasks, work)
    baseline = (before + after) / 2
    print(f"no-op tasks/s before the warmer's measures {before:,.0f}, after {after:,.0f}")
    _report(args, baseline, measure, curve, times)


def _report(
    args: argparse.Namespace,
    baseline: float,
    measure: dict[str, Run],
    curve: list[tuple[int, int, Run]],
    times: list[float],
) -> None:
    q = statistics.quantiles(times, n=100)
    latency_n = int(args.rate * args.seconds)
    print(
        f"events: {args.events} one-event requests from {args.concurrency} connections (wrk), "
        f"{args.workers} receiver process(es); latency: {latency_n} events at {args.rate:g}/s; "
        f"python {sys.version.split()[0]}"
    )
    print(f"{'Celery no-op tasks drained (prefork 2)':44} {baseline:>9,.0f} tasks/s")
    for kind, what in (("push", "pushes to warm cache"), ("pull", "pulls to access figures")):
        run = measure[kind]
        print(
            f"{'warmer: ' + what:44} {run.rate:>9,.0f} events/s "
            f"({run.rate / baseline:.2f}x the no-op task rate)"
        )
        cpu = ", ".join(f"{name} {us:.0f}" for name, us in run.cpu_us.items())
        print(f"{'  CPU per event, µs':44} {cpu}")
        if kind == "push":
            print(f"{'  events per task':44} {run.per_task:9.1f}")
    for round_, connections, run in curve:
        label = f"  pushes, round {round_}, {connections} connections"
        cpu = ", ".join(f"{name} {us:.0f}" for name, us in run.cpu_us.items())
        print(
            f"{label:44} {run.rate:>9,.0f} events/s ({run.rate / baseline:.2f}x); "
            f"{run.per_task:.1f} events a task; µs an event: {cpu}"
        )
    if curve:
        rounds: dict[int, list[tuple[int, float]]] = {}
        for round_, connections, run in curve:
            rounds.setdefault(round_, []).append((connections, run.rate))
        _plot(rounds, baseline, args.workers, args.plot)
    print(
        f"{'warmer: event-to-warm latency at ' + format(args.rate, 'g') + '/s':44} "
        f"p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, max {max(times):.1f} ms"
    )
    slowest = min(run.rate for run in measure.values()) / baseline
    print(
        f"targets: >= 3x the no-op rate, pushes and pulls -> "
        f"{'met' if slowest >= 3 else 'NOT met'} ({slowest:.2f}x); "
        f"p99 < 50 ms -> {'met' if q[98] < 50 else 'NOT met'}"
    )


def _plot(
    rounds: dict[int, list[tuple[int, float]]], baseline: float, workers: int, out: Path
) -> None:
    try:
        import matplotlib  # noqa: PLC0415 (bench-only dependency)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        print("matplotlib is not installed: no plot (pip install -e '.[bench]')", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(8, 4))
    for round_, curve in rounds.items():
        label = f"receiver ({workers} process), round {round_}"
        ax.plot([c for c, _ in curve], [r for _, r in curve], marker="o", label=label)
    connections = sorted({c for curve in rounds.values() for c, _ in curve})
    ax.axhline(baseline, color="grey", linestyle="--", label="Celery no-op tasks/s (prefork 2)")
    ax.axhline(3 * baseline, color="grey", linestyle=":", label="3x the no-op rate")
    ax.set_xscale("log", base=2)
    ax.set_xticks(connections, [str(c) for c in connections])
    ax.set_xlabel("concurrent connections (wrk, one push event per request)")
    ax.set_ylabel("events/s to the warm cache")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"plot: {out}")


def _ready(port: int) -> bool:
    try:
        return httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx2.HTTPError:
        return False


if __name__ == "__main__":
    main()
