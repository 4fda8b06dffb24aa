"""Benchmark: the heal after a garbage-collect that empties the cache, as Harbor's GC does.

    python bench/heal.py [--repos 1000] [--links 100] [--blobs 20000] [--hot 200]
                         [--workers 2] [--check-interval 10]

A store of REPOS x LINKS blob links (built once under ``$TMPDIR/warmer-bench``, shared with
``bench/shapes.py``), the cache warmed, HOT repositories pulled in the hour before; then every
``blobs::*`` and ``repository::*`` key deleted (what Harbor's GC does at its end). With a
``warmer worker`` (WORKERS processes) and ``warmer beat`` running, the seconds from the flush
until beat's look notices (the heal's re-warm takes its lock: within the check interval), until
50%, 95% and 100% of the HOT repositories' blobs are members again, and until every
repository's are. Twice in one run: with the pulls known (the heal warms the hottest first),
and with no pull known (the store's order), the baseline.

What it does not time: the registry's own refill as pulls arrive (none here).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.rewarm import build_store
from bench.throwaway import warmer_settings
from worker.cache import BlobDescriptorCache
from worker.cache.keys import repository_blobs_key
from worker.celeryapp import create_app
from worker.cli.processes import stop_group, throwaway_redis, wait_until
from worker.core.blobservice import CachedBlobService
from worker.core.heal import note_cache_size
from worker.core.rewarm import rewarm
from worker.state import StateStore
from worker.storage.filesystem import FilesystemStore

_SHARES = (0.5, 0.95, 1.0)


def flush_like_harbor_gc(client: redis.Redis) -> None:
    """Delete every ``blobs::*`` and ``repository::*`` key, in batches, as Harbor's GC does."""
    for pattern in ("blobs::*", "repository::*"):
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)


def _warm_share(client: redis.Redis, names: list[str], links: int) -> float:
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.scard(repository_blobs_key(name))
    counts: list[int] = pipe.execute()
    return sum(min(n, links) for n in counts) / (len(names) * links)


def heal_once(
    root: Path, args: argparse.Namespace, hot: list[str], everyone: list[str], *, known: bool
) -> dict[str, float]:
    """Seconds from the flush to each share of the hot blobs warm, and to all of them."""
    with throwaway_redis() as port:
        settings = warmer_settings(port, root, cache_check_interval=args.check_interval)
        cache_client = redis.Redis(port=port, db=0)
        state = StateStore(redis.Redis(port=port, db=2))
        cache = BlobDescriptorCache(cache_client)
        rewarm(CachedBlobService(cache, FilesystemStore(root)))
        note_cache_size(cache, state)
        if known:  # pulled at random times in the hour before the flush, the hottest last
            now = time.time()
            for name in hot:
                state.record_pulls({name: 1}, at=now - random.uniform(0, 3600))
        env = {**os.environ, **settings.environment()}
        warmer = str(Path(sys.executable).with_name("warmer"))
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        procs = [
            subprocess.Popen(
                [warmer, "worker", "--concurrency", str(args.workers), "--loglevel", "WARNING"],
                env=env,
                start_new_session=True,
                **quiet,  # type: ignore[call-overload]
            )
        ]
        try:
            procs.append(
                subprocess.Popen(
                    [warmer, "beat", "--loglevel", "WARNING"],
                    env=env,
                    cwd=tempfile.gettempdir(),  # its schedule file
                    start_new_session=True,
                    **quiet,  # type: ignore[call-overload]
                )
            )
            # Flushed once the worker answers (beat's looks compare with the count noted above).
            app = create_app(settings)
            wait_until(lambda: app.control.ping(timeout=0.5), timeout=60, what="the worker")
            flush_like_harbor_gc(cache_client)
            flushed = time.perf_counter()
            times: dict[str, float] = {}
            # Noticed: beat's look saw the drop and the heal's re-warm took its lock.
            locks = redis.Redis(port=port, db=2)
            wait_until(
                lambda: locks.exists("warmer:lock:rewarm"),
                timeout=900,
                what="the heal's re-warm",
                interval=0.05,
            )
            times["noticed"] = time.perf_counter() - flushed
            for share in _SHARES:

                def reached(share: float = share) -> bool:
                    return _warm_share(cache_client, hot, args.links) >= share

                wait_until(
                    reached,
                    timeout=900,
                    what=f"{share:.0%} of the hot blobs",
                    interval=0.1,
                )
                times[f"hot {share:.0%}"] = time.perf_counter() - flushed
            wait_until(
                lambda: _warm_share(cache_client, everyone, args.links) >= 1.0,
                timeout=900,
                what="every blob",
                interval=0.2,
            )
            times["all 100%"] = time.perf_counter() - flushed
        finally:
            for proc in procs:
                stop_group(proc, timeout=30)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--links", type=int, default=100)
    parser.add_argument("--blobs", type=int, default=20_000)
    parser.add_argument("--hot", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--check-interval", type=float, default=10.0)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "warmer-bench")
    args = parser.parse_args()
    root = args.dir / f"shape-{args.repos}x{args.links}"
    build_store(root, args.repos, args.links, args.blobs)
    everyone = sorted(FilesystemStore(root).repositories())
    random.seed(26)
    hot = random.sample(everyone, args.hot)
    print(
        f"{args.repos:,} repositories x {args.links:,} links; {args.hot} pulled in the hour "
        f"before the flush; {args.workers} worker processes; a look every "
        f"{args.check_interval:g} s; seconds from the flush"
    )
    rows = {
        "hottest first (pulls known)": heal_once(root, args, hot, everyone, known=True),
        "store order (no pull known)": heal_once(root, args, hot, everyone, known=False),
    }
    labels = list(next(iter(rows.values())))
    print(f"{'':30}" + "".join(f"{label:>10}" for label in labels))
    for name, times in rows.items():
        print(f"{name:30}" + "".join(f"{times[label]:>10.1f}" for label in labels))


if __name__ == "__main__":
    main()
