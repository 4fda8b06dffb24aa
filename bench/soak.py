"""Soak: a steady stream of pushes and pulls for several retention windows; Redis memory plateaus.

    python bench/soak.py [--seconds 300] [--rate 50] [--result-ttl 60] [--dedup-ttl 30]

Starts three redis-servers of its own (cache, broker, state: as a deployment keeps them apart),
``warmer webhook``, ``warmer worker`` and ``warmer beat``, with the retention windows set short
for the run (``WARMER_RESULT_TTL``, ``WARMER_DEDUP_TTL``). Then it sends RATE events/s (a fifth
pushes of blobs in the store, the rest pulls, each with a new id, five events a request) for
SECONDS, sampling ``used_memory`` of each Redis every two seconds. It prints the table, writes
it as CSV and plots it (PNG, needs matplotlib: ``pip install -e '.[bench]'``), and reports each
Redis's plateau (mean of the last third), its growth over that third, and the bytes per event
it implies: (plateau - memory before the stream) / (events/s x the window that keeps them).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx2
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.layout import LayoutWriter  # noqa: E402
from worker.cli.processes import (  # noqa: E402
    background,
    free_port,
    throwaway_redis,
    wait_until,
)

TOKEN = "soak-token"
REPOS = 20
BLOBS_PER_REPO = 10
PER_REQUEST = 5
SAMPLE_SECONDS = 2.0
SERVERS = ("broker", "state", "cache")


def _event(action: str, repo: str, digest: str) -> dict[str, object]:
    return {
        "id": str(uuid.uuid4()),
        "timestamp": "2026-11-30T07:18:44.169Z",
        "action": action,
        "target": {
            "mediaType": "application/octet-stream",
            "size": 10,
            "digest": digest,
            "length": 10,
            "repository": repo,
            "url": f"http://reg/v2/{repo}/blobs/{digest}",
        },
        "request": {"id": "r", "addr": "a", "host": "h", "method": "GET", "useragent": "soak"},
        "actor": {},
        "source": {"addr": "vm:5000", "instanceID": "i"},
    }


def _ready(url: str) -> bool:
    try:
        return httpx2.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx2.HTTPError:
        return False


def _used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def soak(args: argparse.Namespace, work: Path) -> list[dict[str, float]]:
    """Run the stream; return the samples (seconds since the start, used_memory per Redis)."""
    layout = LayoutWriter(work / "root")
    blobs = []
    for r in range(REPOS):
        for b in range(BLOBS_PER_REPO):
            digest = layout.blob(f"soak {r} {b}".encode())
            layout.link(f"soak/repo{r}", digest)
            blobs.append((f"soak/repo{r}", digest))
    with ExitStack() as stack:
        ports = {name: stack.enter_context(throwaway_redis()) for name in SERVERS}
        clients = {name: redis.Redis(port=port) for name, port in ports.items()}
        env = {
            "WARMER_REDIS_URL": f"redis://127.0.0.1:{ports['cache']}/0",
            "WARMER_BROKER_URL": f"redis://127.0.0.1:{ports['broker']}/0",
            "WARMER_STATE_URL": f"redis://127.0.0.1:{ports['state']}/0",
            "WARMER_STORAGE_ROOT": str(layout.store.root),
            "WARMER_WEBHOOK_TOKEN": TOKEN,
            "WARMER_RESULT_TTL": str(args.result_ttl),
            "WARMER_DEDUP_TTL": str(args.dedup_ttl),
        }
        warmer = str(Path(sys.executable).with_name("warmer"))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        stack.enter_context(
            background([warmer, "webhook", "--port", str(port)], env, work / "w.log")
        )
        worker = [warmer, "worker", "--concurrency", "2", "--without-mingle", "--without-gossip"]
        stack.enter_context(background(worker, env, work / "worker.log"))
        beat = [warmer, "beat", "--schedule", str(work / "beat-schedule")]
        stack.enter_context(background(beat, env, work / "beat.log"))
        wait_until(lambda: _ready(url), timeout=60, what="the receiver", interval=0.1)
        time.sleep(2)  # the worker and beat connect; memory before the stream is the baseline
        samples: list[dict[str, float]] = []
        started = time.monotonic()
        next_sample = started
        sent = 0
        headers = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}
        with httpx2.Client(timeout=10) as http:
            while (now := time.monotonic()) - started < args.seconds:
                if now >= next_sample:
                    row = {"seconds": round(now - started, 1)}
                    row |= {name: _used(c) for name, c in clients.items()}
                    samples.append(row)
                    next_sample += SAMPLE_SECONDS
                events = []
                for i in range(PER_REQUEST):
                    repo, digest = blobs[(sent + i) % len(blobs)]
                    pushes = (sent + i) % 5 == 0  # a fifth pushes, the rest pulls
                    events.append(_event("push" if pushes else "pull", repo, digest))
                body = json.dumps({"events": events}).encode()
                answer = http.post(f"{url}/events", content=body, headers=headers)
                answer.raise_for_status()
                sent += PER_REQUEST
                time.sleep(max(0.0, started + sent / args.rate - time.monotonic()))
        print(f"sent {sent} events in {args.seconds} s", file=sys.stderr)
        return samples


def report(samples: list[dict[str, float]], args: argparse.Namespace) -> None:
    """Print the table and the plateaus; write CSV and PNG beside ``args.out``."""
    out = Path(args.out)
    with out.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["seconds", *SERVERS])
        writer.writeheader()
        writer.writerows(samples)
    third = samples[-max(1, len(samples) // 3) :]
    window = {"broker": args.result_ttl, "state": args.result_ttl, "cache": args.result_ttl}
    print("| Redis | before (MB) | plateau (MB) | growth over the last third (KB) | bytes/event |")
    print("|---|---|---|---|---|")
    for name in SERVERS:
        before = samples[0][name]
        plateau = statistics.mean(s[name] for s in third)
        growth = third[-1][name] - third[0][name]
        per_event = (plateau - before) / (args.rate * window[name])
        print(
            f"| {name} | {before / 1e6:.2f} | {plateau / 1e6:.2f} | {growth / 1e3:+.0f} "
            f"| {per_event:.0f} |"
        )
    try:
        import matplotlib  # noqa: PLC0415 (bench-only dependency)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        print("matplotlib is not installed: no plot (pip install -e '.[bench]')", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(8, 4))
    for name in SERVERS:
        ax.plot([s["seconds"] for s in samples], [s[name] / 1e6 for s in samples], label=name)
    for k in range(1, int(args.seconds // args.result_ttl) + 1):
        ax.axvline(k * args.result_ttl, color="grey", linewidth=0.5, linestyle=":")
    ax.set_xlabel("seconds (dotted: result windows)")
    ax.set_ylabel("used_memory (MB)")
    ax.set_title(
        f"{args.rate} events/s, results kept {args.result_ttl} s, dedup {args.dedup_ttl} s"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=100)
    print(f"plot: {out.with_suffix('.png')}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--rate", type=float, default=50, help="events per second")
    parser.add_argument("--result-ttl", type=int, default=60)
    parser.add_argument("--dedup-ttl", type=int, default=30)
    parser.add_argument("--out", default=str(ROOT / "bench" / "soak"), help="CSV/PNG path stem")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="warmer-soak-") as tmp:
        samples = soak(args, Path(tmp))
    report(samples, args)


if __name__ == "__main__":
    main()
