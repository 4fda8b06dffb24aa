"""End to end with registry 3.x on every kind of Redis its config can name: a Cluster of three
masters, a Sentinel (with a failover during a stream of pushes), and TLS with an ACL user.

On each, the warmer's fill equals what v3.1.1 fills by itself on pulling everything, key for
key, and a first pull through a registry on it misses nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.oci import Image, Index, layer, write_layout
from tests.support.redis_servers import redis_cluster, redis_sentinel, redis_tls
from tests.support.redisdbs import DB, shared_env
from tests.support.redisdump import dump
from tests.support.registry import registry_binary, running_registry
from tests.support.services import run_warmer_json, running_warmer
from worker.cli.demo.registry import Registry, RegistryBinary
from worker.cli.processes import wait_until
from worker.config.connections import connect
from worker.state import StateStore

pytestmark = pytest.mark.e2e

PUSH_DB = DB.KINDS_PUSH
TOKEN = "kinds-token"
SHARED = layer("shared.txt", b"shared by two repositories")
IMAGES: dict[str, Image | Index] = {
    "team/app:v1": Image([SHARED, layer("a.txt", b"a")], label="team"),
    "other/app:v1": Image([SHARED, layer("b.txt", b"b")], label="other"),
    "multi/platform:v1": Index(
        [
            Image([layer("x.txt", b"amd64")], "amd64", "m1"),
            Image([layer("x.txt", b"arm64"), SHARED], "arm64", "m2"),
        ]
    ),
}


def _dirname(name: str) -> str:
    return name.replace("/", "_").replace(":", "_")


def _push(registry: Registry, workdir: Path, images: dict[str, Image | Index]) -> None:
    for name, image in images.items():
        layout = write_layout(workdir / "layouts" / _dirname(name), image)
        registry.push(layout, name, all_platforms=isinstance(image, Index))


def _pull_all(registry: Registry, into: Path, names: list[str]) -> dict[str, int]:
    for name in names:
        registry.pull(name, into / _dirname(name))
    return registry.cache_counts()


@pytest.fixture(scope="module")
def v3() -> RegistryBinary:
    return registry_binary("registry-3")


@pytest.fixture(scope="module")
def storage(redis_proc: Any, tmp_path_factory: pytest.TempPathFactory, v3: RegistryBinary) -> Path:
    """The corpus, pushed through a 3.x registry whose cache is a plain DB."""
    work = tmp_path_factory.mktemp("kinds")
    root = work / "storage"
    url = f"redis://{redis_proc.host}:{redis_proc.port}/{PUSH_DB}"
    redis.Redis(host=redis_proc.host, port=redis_proc.port, db=PUSH_DB).flushdb()
    with running_registry(work / "push", root=root, redis_url=url, binary=v3) as reg:
        _push(reg, work, IMAGES)
    return root


def _fill_equals_the_registrys_and_misses_nothing(
    cache_url: str, storage: Path, v3: RegistryBinary, workdir: Path
) -> None:
    client = connect(cache_url, timeout=5)
    names = list(IMAGES)
    try:
        client.flushall()
        with running_registry(
            workdir / "reference", root=storage, redis_url=cache_url, binary=v3
        ) as reg:
            cold = _pull_all(reg, workdir / "reference-pull", names)
        assert cold["Miss"] > 0, cold  # the registry filled it itself, through this Redis
        reference = dump(client)
        client.flushall()
        env = {
            **os.environ,
            "WARMER_REDIS_URL": cache_url,
            "WARMER_STORAGE_ROOT": str(storage),
            "WARMER_REGISTRY_VERSION": "3",
        }
        summary = run_warmer_json(["rewarm"], env)
        assert (summary["errors"], summary["repositories"]) == (0, 3)
        assert dump(client) == reference
        with running_registry(
            workdir / "warm", root=storage, redis_url=cache_url, binary=v3
        ) as reg:
            counts = _pull_all(reg, workdir / "warm-pull", names)
        where = cache_url.rsplit("@", maxsplit=1)[-1]
        print(f"first full pull through the warmed cache at {where}: {counts}")
        assert counts["Miss"] == 0, counts
        assert counts["Hit"] == counts["Request"] > 0
        assert run_warmer_json(["reconcile"], env)["evicted_members"] == 0
    finally:
        client.close()


def test_registry_3_on_a_redis_cluster(storage: Path, v3: RegistryBinary, tmp_path: Path) -> None:
    with redis_cluster(tmp_path / "cluster") as ports:
        url = "redis://" + ",".join(f"127.0.0.1:{p}" for p in ports)
        _fill_equals_the_registrys_and_misses_nothing(url, storage, v3, tmp_path)
        # The keys really are spread: every master holds some.
        assert all(redis.Redis(port=p).dbsize() > 0 for p in ports)


def test_registry_3_on_tls_with_an_acl_user(
    storage: Path, v3: RegistryBinary, tmp_path: Path
) -> None:
    with redis_tls(tmp_path / "tls") as tls:
        _fill_equals_the_registrys_and_misses_nothing(tls.url(0), storage, v3, tmp_path)


def test_registry_3_through_a_sentinel(storage: Path, v3: RegistryBinary, tmp_path: Path) -> None:
    with redis_sentinel(tmp_path / "sentinel") as sentinel:
        _fill_equals_the_registrys_and_misses_nothing(sentinel.url(0), storage, v3, tmp_path)


@pytest.fixture
def state_and_broker(redis_proc: Any) -> Iterator[dict[str, str]]:
    clients = [
        redis.Redis(host=redis_proc.host, port=redis_proc.port, db=db)
        for db in (DB.KINDS_STATE, DB.KINDS_BROKER)
    ]
    for c in clients:
        c.flushdb()
    env = shared_env(redis_proc, state=DB.KINDS_STATE, broker=DB.KINDS_BROKER)
    del env["WARMER_REDIS_URL"]  # the cache is the Sentinel's master
    yield env
    for c in clients:
        c.flushdb()
        c.close()


def test_a_sentinel_failover_during_a_stream_of_pushes_loses_no_warm(
    redis_proc: Any, v3: RegistryBinary, tmp_path: Path, state_and_broker: dict[str, str]
) -> None:
    root = tmp_path / "storage"
    root.mkdir()
    images = {
        f"stream/app{n}:v1": Image([SHARED, layer(f"{n}.txt", f"layer {n}".encode())], label=str(n))
        for n in range(8)
    }
    with redis_sentinel(tmp_path / "sentinel") as sentinel:
        env = {
            **state_and_broker,
            "WARMER_REDIS_URL": sentinel.url(0),
            "WARMER_STORAGE_ROOT": str(root),
            "WARMER_WEBHOOK_TOKEN": TOKEN,
            "WARMER_REGISTRY_VERSION": "3",
            # The ledger re-sends what failed (writes the old master took after the failover)
            # every visibility timeout / 2: short, so the test does not wait long.
            "WARMER_VISIBILITY_TIMEOUT": "4",
        }
        beat = ["-B", "--schedule", str(tmp_path / "beat-schedule")]
        with running_warmer(env, tmp_path, worker_args=beat) as hook:
            origin_cache = f"redis://{redis_proc.host}:{redis_proc.port}/{PUSH_DB}"
            with running_registry(
                tmp_path / "origin",
                root=root,
                redis_url=origin_cache,
                notify_url=f"{hook}/events",
                token=TOKEN,
                binary=v3,
            ) as origin:
                first = sentinel.master()
                for n, (name, image) in enumerate(images.items()):
                    _push(origin, tmp_path, {name: image})  # one at a time: a stream
                    if n == len(images) // 2:
                        assert sentinel.failover() != first  # mid-stream: a new master
                cache = connect(sentinel.url(0), timeout=5)
                state = StateStore(redis.Redis.from_url(env["WARMER_STATE_URL"]))

                def cold() -> list[str]:
                    return [
                        f"{name}@{d[:19]}"
                        for name, image in images.items()
                        for d in (image.manifest.digest, *(b.digest for b in image.layers))
                        if not cache.sismember(f"repository::{name.partition(':')[0]}::blobs", d)
                    ]

                def all_warm() -> bool:
                    return state.pending_count() == 0 and not cold()

                try:
                    wait_until(all_warm, timeout=120, what="every pushed image warm")
                except TimeoutError:  # say what was left, to tell a lost write from a stuck one
                    left = (state.pending_count(), cold(), state.last("rewarm"))
                    raise AssertionError(f"pending, cold, last re-warm: {left}") from None
                assert state.dead_letter_count() == 0
        with running_registry(
            tmp_path / "replica", root=root, redis_url=sentinel.url(0), binary=v3
        ) as replica:
            counts = _pull_all(replica, tmp_path / "replica-pull", list(images))
        print(f"first pull through the Sentinel's new master after a failover: {counts}")
        assert counts["Miss"] == 0, counts
