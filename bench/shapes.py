"""Benchmark: ``rewarm`` on the shapes real stores have, beside its limits and the naive way.

    python bench/shapes.py [--shapes 10x10000,1000x100,100000x1] [--blobs 20000]
                           [--naive-links 5000]

For each shape (REPOSITORIES x LINKS over BLOBS distinct blobs, built once under
``$TMPDIR/warmer-bench`` and reused), in one run, in links/s:

- filesystem limit: a bare ``os.scandir`` walk of every ``_layers`` link with one ``os.stat``
  (``bench/rewarm.py``'s), page cache warm;
- Redis limit: ``redis-cli --pipe`` ingesting exactly the commands a cold re-warm writes;
- re-warm, in-process as ``warmer rewarm`` runs it (its journal of unchecked writes included),
  cache empty, page cache warm, then cold;
- the naive way, on the first NAIVE_LINKS links: what a registry's miss does, one command at a
  time (SISMEMBER, the link read and the data's stat, SADD, HSET of the descriptor, HSET of the
  repository's media type).

The page cache is made cold by ``sync; echo 3 > /proc/sys/vm/drop_caches`` (root only: without
it the cold columns say so). The machine has 2 shared cores: read the ratios.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.rewarm import build_store, redis_pipe_limit, scandir_limit
from worker.cache import BlobDescriptorCache
from worker.cache.keys import blob_key, repository_blob_key, repository_blobs_key
from worker.cli.processes import throwaway_redis
from worker.core.blobservice import CachedBlobService
from worker.core.rewarm import rewarm
from worker.registry.mediatypes import OCTET_STREAM
from worker.state import StateStore
from worker.storage.filesystem import FilesystemStore

_DROP_CACHES = "/proc/sys/vm/drop_caches"


def drop_page_cache() -> bool:
    """Empty the kernel's page, dentry and inode caches; False when not allowed (not root)."""
    subprocess.run(["sync"], check=True)
    try:
        with open(_DROP_CACHES, "w") as f:
            f.write("3\n")
    except OSError:
        return False
    return True


def naive(store: FilesystemStore, client: redis.Redis, limit: int) -> tuple[int, float]:
    """What a registry's miss does for each link, one command at a time, on ``limit`` links."""
    count = 0
    started = time.perf_counter()
    for name in store.repositories():
        for digest in store.layers(name):
            if not client.sismember(repository_blobs_key(name), digest):
                desc = store.fetch(name, digest)
                client.sadd(repository_blobs_key(name), digest)
                client.hset(
                    blob_key(digest),
                    mapping={"digest": digest, "size": desc.size, "mediatype": OCTET_STREAM},
                )
                client.hset(repository_blob_key(name, digest), "mediatype", OCTET_STREAM)
            count += 1
            if count >= limit:
                return count, time.perf_counter() - started
    return count, time.perf_counter() - started


def measure(root: Path, naive_links: int) -> dict[str, tuple[int, float] | None]:
    """Every figure of one built store: name to (links, seconds), None when not measurable."""
    store = FilesystemStore(root)
    figures: dict[str, tuple[int, float] | None] = {}
    with throwaway_redis() as port:
        client = redis.Redis(port=port)
        journal = StateStore(redis.Redis(port=port, db=2)).unchecked
        service = CachedBlobService(BlobDescriptorCache(client), store, journal=journal)
        scandir_limit(root)  # the page cache warm for both walks
        figures["filesystem limit"] = scandir_limit(root)
        figures["Redis limit"] = redis_pipe_limit(store, port, client)
        client.flushdb()
        rewarm(service)  # a first walk reads what the bare one did not (revisions, blobs' data)
        client.flushdb()
        summary = rewarm(service)
        figures["rewarm, page cache warm"] = (summary.blobs, summary.seconds)
        client.flushdb()
        cold = drop_page_cache()
        summary = rewarm(service)
        figures["rewarm, page cache cold"] = (summary.blobs, summary.seconds) if cold else None
        figures["filesystem limit, cold"] = (
            scandir_limit(root) if cold and drop_page_cache() else None
        )
        client.flushdb()
        figures["naive, one command at a time"] = naive(store, client, naive_links)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="10x10000,1000x100,100000x1")
    parser.add_argument("--blobs", type=int, default=20_000)
    parser.add_argument("--naive-links", type=int, default=5_000)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "warmer-bench")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}; {os.cpu_count()} cores; links/s (links, seconds)")
    for shape in args.shapes.split(","):
        repos, links = (int(n) for n in shape.split("x"))
        root = args.dir / f"shape-{repos}x{links}"
        build_store(root, repos, links, args.blobs)
        figures = measure(root, args.naive_links)
        rate = {k: v[0] / v[1] for k, v in figures.items() if v is not None and v[1] > 0}
        total = f"{repos:,} repositories x {links:,} links ({repos * links:,})"
        print(f"\n{total}, {args.blobs:,} blobs")
        for label, value in figures.items():
            text = "not measured (the page cache cannot be dropped: not root)"
            if value is not None:
                text = f"{rate[label]:>10,.0f}  ({value[0]:,} in {value[1]:.2f} s)"
            print(f"  {label:34} {text}")
        warm = rate["rewarm, page cache warm"]
        print(
            f"  rewarm / naive: {warm / rate['naive, one command at a time']:.1f}x (target 10x); "
            f"rewarm / filesystem limit: {warm / rate['filesystem limit']:.0%} (target 50%)"
        )


if __name__ == "__main__":
    main()
