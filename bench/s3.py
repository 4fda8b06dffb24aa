"""Benchmark: ``rewarm`` of an S3 store (moto's server) beside the naive way, in one run.

    python bench/rewarm.py --store s3 [--repos 100] [--links 1000] [--blobs 50000]
                                      [--naive-repos 10]

Starts moto's S3 server on a free port of 127.0.0.1 (``bench/s3_server.py``, which fills its
backend directly: uploading over HTTP would take moto many minutes) and its own redis-server,
with a store of REPOS repositories x LINKS blob links over BLOBS distinct blobs (every blob in
LINKS*REPOS/BLOBS repositories), then measures, in links/s and S3 requests a link:

- **naive**: what a registry's miss does for each link, a GET of the link and a HEAD of the
  blob's data, on as many threads as the store uses (16), over the links of the first
  NAIVE_REPOS repositories (``--naive-repos``, 10 by default: 10,000 links take moto minutes);
- **rewarm, cold** (empty cache: every link a miss) and **warm** (every link a hit);
- **reconcile** of the full cache (every member and descriptor live): entries/s, where the
  naive way's check of an entry is the same GET and HEAD as its read of a link.

moto keeps its objects in one Python process: listing and reading are both far slower than on
a real S3, so read the ratios. Everything started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from botocore.exceptions import BotoCoreError, ClientError

from bench.s3_endpoint import ACCESS_KEY, REGION, SECRET_KEY, client
from worker.cache import BlobDescriptorCache
from worker.cli.processes import free_port, throwaway_redis, wait_until
from worker.core.blobservice import CachedBlobService
from worker.core.reconcile import reconcile
from worker.core.rewarm import rewarm
from worker.storage import paths
from worker.storage.s3 import DEFAULT_WORKERS, S3Store

__all__ = ["bench_store", "filled_server", "main", "naive"]

BUCKET = "warmer-bench"
ROOT = "registry"


def _digest(i: int) -> str:
    return "sha256:" + hashlib.sha256(f"blob-{i}".encode()).hexdigest()


def objects(repos: int, links: int, blobs: int) -> Iterator[tuple[str, bytes]]:
    """Every object of the benchmark's store: driver paths and contents."""
    for i in range(blobs):
        yield paths.blob_data(_digest(i)), f"blob-{i}".encode() * 8
    for r in range(repos):
        name = f"org{r % 10}/app{r}"
        for j in range(links):
            d = _digest((r * links + j) % blobs)
            yield paths.layer_link(name, d), d.encode()


@contextmanager
def filled_server(work: Path, repos: int, links: int, blobs: int) -> Iterator[str]:
    """bench/s3_server.py on a free port, filled; its endpoint. Stopped on leaving."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    script = Path(__file__).with_name("s3_server.py")
    args = [str(a) for a in (port, BUCKET, ROOT, repos, links, blobs)]
    print(f"filling moto with {blobs} blobs and {repos * links} links ...", flush=True)
    with (work / "moto.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, str(script), *args], stdout=log, stderr=log)
    try:
        s3 = client(endpoint)

        def ready() -> bool:
            if proc.poll() is not None:
                raise SystemExit(f"moto exited: {(work / 'moto.log').read_text()[-2000:]}")
            try:
                s3.head_object(Bucket=BUCKET, Key="ready")
            except (ClientError, BotoCoreError):
                return False
            return True

        wait_until(ready, timeout=1800, what="moto to be filled")
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bench_store(endpoint: str) -> S3Store:
    """The store of the bucket :func:`filled_server` fills."""
    return S3Store(
        BUCKET, ROOT, region=REGION, endpoint=endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY
    )


def naive(
    store: S3Store, repos: int, links: int, blobs: int, sample: int
) -> tuple[int, float, int]:
    """A GET of each link and a HEAD of its blob's data, as a registry's miss does, over the
    first ``sample`` repositories: its rate does not depend on how many links it reads."""
    names = [f"org{r % 10}/app{r}" for r in range(min(sample, repos))]
    before = store.requests
    started = time.perf_counter()
    total = 0
    for r, name in enumerate(names):
        digests = [_digest((r * links + j) % blobs) for j in range(links)]
        results = store.fetch_many(name, digests)  # GET + HEAD each, on the store's threads
        assert not any(isinstance(x, Exception) for x in results), results[:3]
        total += len(digests)
    return total, time.perf_counter() - started, store.requests - before


def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="warmer-bench-s3-"))
    with (
        filled_server(work, args.repos, args.links, args.blobs) as endpoint,
        throwaway_redis() as port,
    ):
        store = bench_store(endpoint)
        cache = redis.Redis(port=port)
        service = CachedBlobService(BlobDescriptorCache(cache), store)
        cache.flushdb()
        cold = rewarm(service, batch_size=args.batch_size)
        warm = rewarm(service, batch_size=args.batch_size)
        checked = reconcile(service.cache, store)
        n_links, n_s, n_requests = naive(
            store, args.repos, args.links, args.blobs, args.naive_repos
        )
        assert cold.errors == 0, cold
        assert cold.blobs == args.repos * args.links
        assert checked.evicted_members == checked.evicted_descriptors == checked.errors == 0
    naive_rate = n_links / n_s
    rows = [
        (f"naive: GET link + HEAD blob, {DEFAULT_WORKERS} threads", n_links, n_s, n_requests),
        ("warmer rewarm, cold cache (all misses)", cold.blobs, cold.seconds, cold.s3_requests),
        ("warmer rewarm, warm cache (all hits)", warm.blobs, warm.seconds, warm.s3_requests),
        (
            "warmer reconcile, full cache (entries)",
            checked.members + checked.descriptors,
            checked.seconds,
            checked.s3_requests,
        ),
    ]
    print(
        f"S3 store (moto): {args.repos} repositories x {args.links} links, {args.blobs} "
        f"distinct blobs; batch size {args.batch_size}"
    )
    print(f"{'':48} {'links':>8} {'seconds':>8} {'links/s':>9} {'req/link':>9} {'x naive':>8}")
    for label, n, secs, requests in rows:
        rate = n / secs
        print(
            f"{label:48} {n:>8} {secs:>8.2f} {rate:>9,.0f} {requests / n:>9.4f} "
            f"{rate / naive_rate:>7.1f}x"
        )
    cold_rate, cold_per_link = cold.blobs / cold.seconds, cold.s3_requests / cold.blobs
    print(
        f"targets: <= 0.02 S3 requests a link -> {cold_per_link:.4f} "
        f"({'met' if cold_per_link <= 0.02 else 'NOT met'}); >= 10x the naive links/s -> "
        f"{cold_rate / naive_rate:.1f}x ({'met' if cold_rate >= 10 * naive_rate else 'NOT met'})"
    )


if __name__ == "__main__":
    raise SystemExit("run it as: python bench/rewarm.py --store s3")
