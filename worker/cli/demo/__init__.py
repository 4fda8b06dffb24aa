"""``make demo``: a registry, a replica, and the warmer, on this machine, for a few seconds.

One storage, three registries on Debian's ``docker-registry``: ``origin`` takes a push and
notifies the warmer; two replicas serve the same storage from Redis caches of their own, one
that nothing fills and one that the warmer fills. The first pull through each shows what the
warmer saves. Everything runs on free ports under a temporary folder, and is stopped and removed
at the end, also on Ctrl-C or an error.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis

from worker.cache import BlobDescriptorCache
from worker.cli.demo.oci import Image, layer, write_layout
from worker.cli.demo.registry import (
    DEBIAN_REGISTRY,
    Registry,
    free_port,
    running_registry,
    tools_missing,
)
from worker.cli.demo.services import warmer_process, webhook_ready
from worker.cli.processes import throwaway_redis, wait_until
from worker.errors import CacheMissError, ConfigError
from worker.state import StateStore
from worker.state.figures import read

__all__ = ["run_demo"]

_TOKEN = "demo-token"
_IMAGE = "demo/app:v1"
# Redis DBs of the registries' cache server, and of the warmer's own server (broker and state
# never share the caches' server, which a registry wants evicting: the warmer refuses that).
_ORIGIN_DB, _PLAIN_DB, _WARMED_DB = 0, 1, 2
_BROKER_DB, _STATE_DB = 0, 1


def run_demo(say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo; return the figures it printed."""
    missing = tools_missing() + ([] if shutil.which("redis-server") else ["redis-server"])
    if missing:
        raise ConfigError(
            f"make demo needs {' and '.join(missing)}: apt-get install {' '.join(missing)}"
        )
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="warmer-demo-")))
        port = stack.enter_context(throwaway_redis(directory=work))
        queues = stack.enter_context(throwaway_redis(directory=work))  # noeviction
        root = work / "storage"
        root.mkdir()
        base = f"redis://127.0.0.1:{port}"
        env = {
            "WARMER_REDIS_URL": f"{base}/{_WARMED_DB}",
            "WARMER_BROKER_URL": f"redis://127.0.0.1:{queues}/{_BROKER_DB}",
            "WARMER_STATE_URL": f"redis://127.0.0.1:{queues}/{_STATE_DB}",
            "WARMER_STORAGE_ROOT": str(root),
            "WARMER_WEBHOOK_TOKEN": _TOKEN,
            # The demo's registries are Debian's docker-registry: 2.8.
            "WARMER_REGISTRY_VERSION": DEBIAN_REGISTRY.version.value,
        }
        hook = free_port()
        url = f"http://127.0.0.1:{hook}"
        say("starting the warmer (webhook and worker) and three registries ...")
        stack.enter_context(
            warmer_process(["webhook", "--port", str(hook)], env, work / "webhook.log")
        )
        stack.enter_context(
            warmer_process(
                ["worker", "--pool", "solo", "--without-mingle", "--without-gossip"],
                env,
                work / "worker.log",
            )
        )
        wait_until(lambda: webhook_ready(url), timeout=60, what="the warmer's webhook")
        origin = stack.enter_context(
            running_registry(
                work / "origin",
                root=root,
                redis_url=f"{base}/{_ORIGIN_DB}",
                notify_url=f"{url}/events",
                token=_TOKEN,
            )
        )
        plain = stack.enter_context(
            running_registry(work / "plain", root=root, redis_url=f"{base}/{_PLAIN_DB}")
        )
        warmed = stack.enter_context(
            running_registry(work / "warmed", root=root, redis_url=f"{base}/{_WARMED_DB}")
        )
        image = Image(
            [
                layer("hello.txt", b"hello from the demo\n"),
                layer("big.bin", bytes(range(256)) * 64),
            ],
            label="demo",
        )
        say(f"pushing {_IMAGE} (config, 2 layers) to the origin registry ...")
        origin.push(write_layout(work / "image", image), _IMAGE)
        state = StateStore(redis.Redis(port=queues, db=_STATE_DB))
        cache = BlobDescriptorCache(redis.Redis(port=port, db=_WARMED_DB), DEBIAN_REGISTRY.version)
        repository = _IMAGE.partition(":")[0]

        def warm() -> bool:
            try:
                for blob in (image.config, *image.layers):
                    cache.stat(blob.digest, repository)
                cache.stat(image.manifest.digest)
            except CacheMissError:
                return False
            return state.pending_count() == 0

        wait_until(warm, timeout=60, what="the warmer to warm the pushed image")
        without = _first_pull(plain, work / "pull-plain")
        with_ = _first_pull(warmed, work / "pull-warmed")
        stats = read(state).nested()
    say("")
    say("first pull of the image through a replica with its own Redis cache:")
    say(f"  {'':24}{'requests':>10}{'hits':>8}{'misses':>8}")
    say(
        f"  {'without the warmer':24}{without['Request']:>10}{without['Hit']:>8}"
        f"{without['Miss']:>8}"
    )
    say(f"  {'with the warmer':24}{with_['Request']:>10}{with_['Hit']:>8}{with_['Miss']:>8}")
    say("")
    say(
        f"the warmer: {stats['warmed']} warmed; fetch "
        f"{stats['fetch']['requests']} requests, {stats['fetch']['hits']} hits, "
        f"{stats['fetch']['misses']} misses"
    )
    say("everything the demo started is stopped, its files removed.")
    return {"without": without, "with": with_, "warmer": stats}


def _first_pull(registry: Registry, into: Path) -> dict[str, int]:
    registry.pull(_IMAGE, into)
    return registry.cache_counts()
