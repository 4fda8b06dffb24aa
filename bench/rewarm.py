"""Benchmark: in-process ``rewarm`` beside the two limits it can approach, measured in one run.

    python bench/rewarm.py [--repos 1000] [--links 100] [--blobs 20000]
    python bench/rewarm.py --store s3 [--repos 100] [--links 1000] [--blobs 50000]
                                      [--naive-repos 10]

(``--store s3``: see ``bench/s3.py``.)

Builds (once, then reuses) a store of REPOS repositories x LINKS blob links over BLOBS distinct
blobs, starts its own redis-server on a free port, and measures in links/s:

- filesystem limit: a bare ``os.scandir`` walk of every ``_layers`` link with one ``os.stat``;
- Redis limit: ``redis-cli --pipe`` ingesting exactly the commands a cold rewarm writes;
- rewarm, cold (empty cache: every blob a miss) and warm (every blob a hit);
- the fan-out (``warmer rewarm --enqueue``: a task per chunk of repositories, one summary),
  cold, with ``warmer worker --concurrency 1`` and then 2, from sending the task to the summary
  (``bench/fanout.py`` adds the memory of the planner and of each worker, at a million links).

The machine is shared and has 2 cores: read the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.layout import LayoutWriter
from bench.s3 import main as s3_main
from bench.workers import fan_out
from worker.cache import BlobDescriptorCache
from worker.cli.processes import throwaway_redis
from worker.core.blobservice import CachedBlobService
from worker.core.rewarm import DEFAULT_BATCH_SIZE, rewarm
from worker.registry.mediatypes import OCTET_STREAM
from worker.storage.filesystem import FilesystemStore


def build_store(root: Path, repos: int, links: int, blobs: int) -> None:
    """Write the store once; a marker file makes later runs reuse it."""
    marker = root / f".built-{repos}x{links}-{blobs}"
    if marker.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    writer = LayoutWriter(root)
    print(f"building store: {repos} repositories x {links} links, {blobs} blobs ...", flush=True)
    digests = [writer.blob(f"blob-{i}".encode() * 8) for i in range(blobs)]
    for r in range(repos):
        name = f"org{r % 10}/app{r}"
        for j in range(links):
            writer.link(name, digests[(r * links + j) % blobs])
    marker.touch()


def scandir_limit(root: Path) -> tuple[int, float]:
    """Walk every repository's _layers and stat each link: the filesystem's part, bare."""
    count = 0
    started = time.perf_counter()
    stack = [str(root / "docker/registry/v2/repositories")]
    while stack:
        directory = stack.pop()
        with os.scandir(directory) as it:
            for entry in it:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                if entry.name == "_layers":
                    for alg in os.scandir(entry.path):
                        for blob in os.scandir(alg.path):
                            os.stat(os.path.join(blob.path, "link"))
                            count += 1
                elif not entry.name.startswith("_"):
                    stack.append(entry.path)
    return count, time.perf_counter() - started


def _resp(*parts: str | int) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for p in parts:
        b = str(p).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def redis_pipe_limit(store: FilesystemStore, port: int, client: redis.Redis) -> tuple[int, float]:
    """``redis-cli --pipe`` ingesting the commands a cold rewarm writes: the Redis part, bare."""
    with tempfile.NamedTemporaryFile("wb", suffix=".resp", delete=False) as f:
        count = 0
        for name in store.repositories():
            digests = list(store.layers(name))
            f.write(_resp("SADD", f"repository::{name}::blobs", *digests))
            for d in digests:
                size = store.stat(d).size
                f.write(_resp("HSET", f"blobs::{d}", "digest", d, "size", size))
                f.write(_resp("HSETNX", f"blobs::{d}", "mediatype", OCTET_STREAM))
                f.write(_resp("HSET", f"repository::{name}::blobs::{d}", "mediatype", OCTET_STREAM))
            count += len(digests)
    client.flushdb()
    started = time.perf_counter()
    with open(f.name, "rb") as stdin:
        subprocess.run(
            ["redis-cli", "-p", str(port), "--pipe"],
            stdin=stdin,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    elapsed = time.perf_counter() - started
    os.unlink(f.name)
    return count, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("filesystem", "s3"), default="filesystem")
    parser.add_argument("--repos", type=int)
    parser.add_argument("--links", type=int)
    parser.add_argument("--blobs", type=int)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--naive-repos", type=int, default=10, help="s3: repositories the naive way reads"
    )
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "warmer-bench")
    args = parser.parse_args()
    shape = (100, 1000, 50_000) if args.store == "s3" else (1000, 100, 20_000)
    for name, default in zip(("repos", "links", "blobs"), shape, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.store == "s3":
        s3_main(args)
        return
    root = args.dir / "root"
    build_store(root, args.repos, args.links, args.blobs)
    store = FilesystemStore(root)
    with throwaway_redis() as port:
        client = redis.Redis(port=port)
        service = CachedBlobService(BlobDescriptorCache(client), store)
        scandir_limit(root)  # warm the dentry cache so both walks see the same filesystem
        fs_links, fs_s = scandir_limit(root)
        rp_links, rp_s = redis_pipe_limit(store, port, client)
        client.flushdb()
        cold = rewarm(service, batch_size=args.batch_size)
        warm = rewarm(service, batch_size=args.batch_size)
        fanned = [fan_out(port, root, n) for n in (1, 2)]
    fs_rate, rp_rate = fs_links / fs_s, rp_links / rp_s
    cold_rate, warm_rate = cold.blobs / cold.seconds, warm.blobs / warm.seconds
    slower = min(fs_rate, rp_rate)
    rows = [
        ("filesystem limit: scandir + stat per link", fs_links, fs_s, fs_rate),
        ("Redis limit: redis-cli --pipe, same commands", rp_links, rp_s, rp_rate),
        ("warmer rewarm, cold cache (all misses)", cold.blobs, cold.seconds, cold_rate),
        ("warmer rewarm, warm cache (all hits)", warm.blobs, warm.seconds, warm_rate),
        *(
            (
                f"rewarm --enqueue, cold, {n} worker process{'es' if n > 1 else ''}",
                links,
                secs,
                links / secs,
            )
            for n, (links, secs, *_) in zip((1, 2), fanned, strict=True)
        ),
    ]
    print(
        f"store: {args.repos} repositories x {args.links} links, {args.blobs} distinct blobs; "
        f"batch size {args.batch_size}; python {sys.version.split()[0]}"
    )
    print(f"{'':52} {'links':>8} {'seconds':>8} {'links/s':>10} {'/ slower limit':>15}")
    for label, n, secs, rate in rows:
        print(f"{label:52} {n:>8} {secs:>8.2f} {rate:>10,.0f} {rate / slower:>14.0%}")
    print(
        f"cold rewarm: {cold.manifests} manifests, {cold.errors} errors; "
        f"target: cold rewarm >= 50% of the slower limit -> "
        f"{'met' if cold_rate >= 0.5 * slower else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
