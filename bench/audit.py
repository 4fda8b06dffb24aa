"""Benchmark: ``warmer fsck`` (the audit) on an S3 store (moto's server) beside the naive way,
in one run.

    .venv/bin/python bench/audit.py [--repos 20] [--links 500] [--blobs 5000] [--sample 1000]
                                    [--stale 100] [--naive-repos 2]

Fills moto as ``bench/rewarm.py --store s3`` does (REPOS x LINKS links over BLOBS blobs), warms
the cache, deletes STALE links (a blob delete each: their memberships go stale), then measures
in entries/s and S3 requests an entry:

- **naive**: a GET of the link and a HEAD of the data for each entry (what checking the cache
  one entry at a time, as a registry's miss reads, costs), over NAIVE_REPOS repositories;
- **fsck, whole cache**: every membership and descriptor, large batches answered by listings;
- **fsck --sample N**: N entries picked at random, each asked alone (link and data).

moto keeps its objects in one Python process, far slower than a real S3: read the ratios.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.s3 import BUCKET, ROOT, _digest, bench_store, filled_server, naive
from bench.s3_endpoint import client
from worker.cache import BlobDescriptorCache
from worker.cli.processes import throwaway_redis
from worker.core.audit import audit
from worker.core.blobservice import CachedBlobService
from worker.core.rewarm import rewarm
from worker.storage import paths
from worker.storage.s3 import DEFAULT_WORKERS

__all__ = ["main"]


def main() -> None:
    """Run the benchmark; print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=20)
    parser.add_argument("--links", type=int, default=500)
    parser.add_argument("--blobs", type=int, default=5000)
    parser.add_argument("--sample", type=int, default=1000)
    parser.add_argument("--stale", type=int, default=100)
    parser.add_argument("--naive-repos", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="warmer-bench-audit-"))
    with (
        filled_server(work, args.repos, args.links, args.blobs) as endpoint,
        throwaway_redis() as port,
    ):
        store = bench_store(endpoint)
        cache = BlobDescriptorCache(redis.Redis(port=port))
        cold = rewarm(CachedBlobService(cache, store))
        assert cold.errors == 0, cold
        # Before the deletes: the naive way reads every link it is given.
        n_links, n_s, n_requests = naive(
            store, args.repos, args.links, args.blobs, args.naive_repos
        )
        s3 = client(endpoint)
        for k in range(args.stale):  # blob deletes spread over the repositories
            r = k % args.repos
            digest = _digest((r * args.links + k) % args.blobs)
            key = f"{ROOT}/{paths.layer_link(f'org{r % 10}/app{r}', digest).lstrip('/')}"
            s3.delete_object(Bucket=BUCKET, Key=key)
        whole = audit(cache, store)
        sampled = audit(cache, store, sample=args.sample)
    assert whole.stale_members == args.stale, whole
    naive_rate = n_links / n_s
    print(
        f"S3 store (moto): {args.repos} repositories x {args.links} links, {args.blobs} distinct "
        f"blobs, {args.stale} links deleted; {whole.checked} cache entries"
    )
    print(
        f"{'':46} {'entries':>8} {'seconds':>8} {'entries/s':>10} {'req/entry':>10} {'x naive':>8}"
    )
    rows = [
        (f"naive: GET link + HEAD data, {DEFAULT_WORKERS} threads", n_links, n_s, n_requests),
        ("warmer fsck, whole cache", whole.checked, whole.seconds, whole.store_requests),
        (
            f"warmer fsck --sample {args.sample}",
            sampled.checked,
            sampled.seconds,
            sampled.store_requests,
        ),
    ]
    for label, n, secs, requests in rows:
        rate = n / secs
        print(
            f"{label:46} {n:>8} {secs:>8.2f} {rate:>10,.0f} {requests / n:>10.4f} "
            f"{rate / naive_rate:>7.1f}x"
        )
    print(
        f"found: whole {whole.found} (stale members {whole.stale_members}), sample "
        f"{sampled.found} of {sampled.checked}"
    )


if __name__ == "__main__":
    main()
