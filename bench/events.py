"""Benchmark: registry notifications to a warm cache, beside Celery's no-op task rate.

    python bench/events.py [--events 3000] [--concurrency 32] [--rate 100] [--seconds 10]

Starts its own redis-server (cache, broker and state DBs), ``warmer webhook`` and ``warmer
worker`` (prefork, 2 processes), and a store of blobs. Then, in links of one blob each:

- throughput: EVENTS blob pushes, one event per request (as a 2.x registry sends them) from
  CONCURRENCY senders; events/s from the first request to the last blob written in the cache;
- latency: RATE events/s for SECONDS; for each event the time from its request to its blob in
  the cache (polled every 2 ms): p50 and p99;
- baseline: the same machine's Celery draining no-op tasks (prefork 2, same broker).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.layout import LayoutWriter  # noqa: E402
from worker.processes import free_port, stop_group, throwaway_redis  # noqa: E402

TOKEN = "bench-token"
REPOS = 10


def _wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


@contextmanager
def _process(args: list[str], env: dict[str, str], log: Path) -> Iterator[None]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield
    finally:
        stop_group(proc)


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


async def throughput(
    url: str, blobs: list[tuple[str, str]], concurrency: int, cache: redis.Redis
) -> float:
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for item in blobs:
        queue.put_nowait(item)
    started = time.perf_counter()
    async with httpx2.AsyncClient(timeout=30) as client:

        async def sender() -> None:
            while not queue.empty():
                repo, digest = queue.get_nowait()
                await _send(client, url, _body(repo, digest))

        await asyncio.gather(*(sender() for _ in range(concurrency)))
    total = len(blobs)
    keys = [f"repository::app{r}::blobs" for r in range(REPOS)]
    while sum(cache.scard(k) for k in keys) < total:
        await asyncio.sleep(0.005)
    return total / (time.perf_counter() - started)


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
    started = time.perf_counter()
    with _process(
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
        _wait(
            lambda: client.llen("celery") == 0 and client.hlen("unacked") == 0,
            300,
            "no-op tasks drained",
        )
        elapsed = time.perf_counter() - started
    app.close()
    return tasks / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--noop-tasks", type=int, default=2000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="warmer-bench-events-"))
    latency_n = int(args.rate * args.seconds)
    writer = LayoutWriter(work / "root")
    blobs = []
    for i in range(args.events + latency_n):
        digest = writer.blob(f"event blob {i}".encode())
        writer.link(f"app{i % REPOS}", digest)
        blobs.append((f"app{i % REPOS}", digest))
    with throwaway_redis() as rport:
        cache = redis.Redis(port=rport, db=0)
        base = f"redis://127.0.0.1:{rport}"
        env = {
            "WARMER_REDIS_URL": f"{base}/0",
            "WARMER_BROKER_URL": f"{base}/1",
            "WARMER_STATE_URL": f"{base}/2",
            "WARMER_STORAGE_ROOT": str(work / "root"),
            "WARMER_WEBHOOK_TOKEN": TOKEN,
        }
        port = free_port()
        url = f"http://127.0.0.1:{port}/events"
        warmer = str(Path(sys.executable).with_name("warmer"))
        with (
            _process([warmer, "webhook", "--port", str(port)], env, work / "webhook.log"),
            _process(
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
            ),
        ):
            _wait(lambda: _ready(port), 30, "warmer webhook /readyz")
            rate = asyncio.run(throughput(url, blobs[: args.events], args.concurrency, cache))
            times = asyncio.run(latency(url, blobs[args.events :], args.rate, cache))
        baseline = noop_rate(f"{base}/3", args.noop_tasks, work)
    q = statistics.quantiles(times, n=100)
    print(
        f"events: {args.events} one-event requests from {args.concurrency} senders; "
        f"latency: {latency_n} events at {args.rate:g}/s; python {sys.version.split()[0]}"
    )
    print(f"{'Celery no-op tasks drained (prefork 2)':44} {baseline:>9,.0f} tasks/s")
    print(
        f"{'warmer: events to warm cache':44} {rate:>9,.0f} events/s "
        f"({rate / baseline:.1f}x the no-op task rate)"
    )
    print(
        f"{'warmer: event-to-warm latency at ' + format(args.rate, 'g') + '/s':44} "
        f"p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, max {max(times):.1f} ms"
    )
    print(
        f"targets: >= 1,000 events/s -> {'met' if rate >= 1000 else 'NOT met'}; "
        f"p99 < 100 ms -> {'met' if q[98] < 100 else 'NOT met'}"
    )


def _ready(port: int) -> bool:
    try:
        return httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx2.HTTPError:
        return False


if __name__ == "__main__":
    main()
