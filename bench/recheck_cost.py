"""Benchmark: what the delete-wins re-check costs in S3 requests, beside other checkouts.

    python bench/recheck_cost.py [--repos 20] [--links 500] [--blobs 5000]
                                 [--code LABEL=PATH ...] [--versions 3,2]

One moto server (``bench/s3_server.py``, filled as ``bench/rewarm.py --store s3`` fills it:
REPOS repositories x LINKS blob links over BLOBS blobs) and one redis-server, then for this
checkout and each ``--code`` checkout (``git worktree add /tmp/base eaa0acf``: the code before
the rule), in a process of its own with that checkout's ``worker`` first on ``sys.path``:

- ``rewarm``: a cold re-warm (empty cache, every link written, so re-checked) and a warm one
  (every link a hit: nothing written), for registry 3.x and 2.x caches: S3 requests a link;
- ``push``: what the worker does for a batch of blob push events (``warm_groups``, one cache
  read and one write for the batch's repositories), on a cold cache and again (every blob a
  hit, as a redelivered or repeated push): S3 requests a blob pushed.

Request counts do not drift with the machine as times do: the checkouts are run one after the
other on the same store. Everything started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Batches of push events, by shape: (repositories, blobs each); 64 or more blobs of one
#: repository are re-checked from listings rather than link by link.
PUSHES = ((1, 1), (1, 20), (10, 2), (1, 100))


def _digest(i: int) -> str:
    # As bench/s3.py names the blobs it fills the store with.
    return "sha256:" + hashlib.sha256(f"blob-{i}".encode()).hexdigest()


def _pushes(repos: int, links: int, blobs: int) -> list[tuple[str, dict[str, list[str]]]]:
    # Linked blobs of the last repositories (a batch's repositories are distinct); shapes of
    # more blobs than a repository links are left out.
    batches = []
    for n_repos, each in PUSHES:
        if each > links or n_repos > repos:
            continue
        label = f"{n_repos * each} blobs" + (f" over {n_repos} repositories" if n_repos > 1 else "")
        groups = {}
        for k in range(n_repos):
            r = repos - 1 - k
            groups[f"org{r % 10}/app{r}"] = [_digest((r * links + j) % blobs) for j in range(each)]
        batches.append((label, groups))
    return batches


def child(args: argparse.Namespace) -> None:
    """Measure the checkout at ``args.checkout`` (first on sys.path); print JSON."""
    # Imported by name once the checkout is first on sys.path: its own code, whatever its
    # layout (before the delete-wins rule the service was worker/core/service.py and the
    # registry versions worker/versions.py).
    sys.path.insert(0, args.checkout)
    redis = importlib.import_module("redis")
    BlobDescriptorCache = importlib.import_module("worker.cache").BlobDescriptorCache
    rewarm = importlib.import_module("worker.core.rewarm").rewarm
    try:
        versions = importlib.import_module("worker.registry.versions")
    except ImportError:
        versions = importlib.import_module("worker.versions")
    RegistryVersion = versions.RegistryVersion
    S3Store = importlib.import_module("worker.storage.s3").S3Store
    try:
        services = importlib.import_module("worker.core.blobservice")
    except ImportError:
        services = importlib.import_module("worker.core.service")
    CachedBlobService = services.CachedBlobService

    spec = json.loads(sys.stdin.read())
    client = redis.Redis(port=args.redis_port)
    out: dict[str, Any] = {"rewarm": {}, "push": {}}
    for version in (RegistryVersion(v) for v in spec["versions"]):
        store = S3Store(spec["bucket"], spec["root"], endpoint=spec["endpoint"], **spec["auth"])
        service = CachedBlobService(BlobDescriptorCache(client, version), store)
        client.flushdb()
        cold = rewarm(service)
        warm = rewarm(service)
        out["rewarm"][version.value] = {
            "links": cold.blobs + cold.manifests,
            "cold": cold.s3_requests,
            "cold_seconds": cold.seconds,
            "warm": warm.s3_requests,
            "errors": cold.errors,
        }
    store = S3Store(spec["bucket"], spec["root"], endpoint=spec["endpoint"], **spec["auth"])
    service = CachedBlobService(BlobDescriptorCache(client, RegistryVersion.V3), store)
    for label, groups in spec["pushes"]:
        client.flushdb()
        counts = []
        for _ in ("cold", "again"):
            before = store.requests
            results = service.warm_groups(groups)
            assert not any(r.error for rs in results.values() for r in rs), results
            counts.append(store.requests - before)
        out["push"][label] = {"blobs": sum(len(d) for d in groups.values()), "requests": counts}
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=20)
    parser.add_argument("--links", type=int, default=500)
    parser.add_argument("--blobs", type=int, default=5000)
    parser.add_argument("--code", action="append", default=[], help="LABEL=PATH of a checkout")
    parser.add_argument("--versions", default="3,2", help="registry versions of the re-warms")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--redis-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--checkout", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    sys.path.insert(0, str(ROOT))  # bench/ itself, from this checkout
    s3 = importlib.import_module("bench.s3")
    endpoints = importlib.import_module("bench.s3_endpoint")
    throwaway_redis = importlib.import_module("worker.cli.processes").throwaway_redis

    codes = [("this checkout", str(ROOT))]
    for code in args.code:
        label, _, path = code.partition("=")
        codes.append((label, path))
    work = Path(tempfile.mkdtemp(prefix="warmer-recheck-"))
    results = {}
    with (
        s3.filled_server(work, args.repos, args.links, args.blobs) as endpoint,
        throwaway_redis() as port,
    ):
        auth = {
            "region": endpoints.REGION,
            "access_key": endpoints.ACCESS_KEY,
            "secret_key": endpoints.SECRET_KEY,
        }
        spec = {
            "bucket": s3.BUCKET,
            "root": s3.ROOT,
            "endpoint": endpoint,
            "auth": auth,
            "pushes": _pushes(args.repos, args.links, args.blobs),
            "versions": args.versions.split(","),
        }
        for label, path in codes:
            started = time.perf_counter()
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "--redis-port",
                    str(port),
                    "--checkout",
                    path,
                ],
                input=json.dumps(spec),
                capture_output=True,
                text=True,
                check=False,
                cwd=path,
            )
            if done.returncode != 0:
                raise SystemExit(f"{label} ({path}) failed:\n{done.stderr[-3000:]}")
            results[label] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{label}: measured in {time.perf_counter() - started:.0f} s", flush=True)
    _print(args, results)


def _print(args: argparse.Namespace, results: dict[str, Any]) -> None:
    print(f"\nS3 store (moto): {args.repos} repositories x {args.links} links, {args.blobs} blobs")
    print(
        f"\n{'re-warm':44} {'links':>7} {'cold req':>9} {'/link':>8} {'warm req':>9} {'/link':>8}"
    )
    for label, found in results.items():
        for version, r in found["rewarm"].items():
            name = f"{label}, registry {version}.x"
            print(
                f"{name:44} {r['links']:>7} {r['cold']:>9} {r['cold'] / r['links']:>8.4f} "
                f"{r['warm']:>9} {r['warm'] / r['links']:>8.4f}"
                + (f"  ({r['errors']} errors)" if r["errors"] else "")
            )
    print(f"\n{'push (registry 3.x)':60} {'blobs':>6} {'cold /blob':>11} {'again /blob':>12}")
    for label, found in results.items():
        for shape, p in found["push"].items():
            cold, again = p["requests"]
            print(
                f"{label + ': ' + shape:60} {p['blobs']:>6} {cold / p['blobs']:>11.2f} "
                f"{again / p['blobs']:>12.2f}"
            )


if __name__ == "__main__":
    main()
