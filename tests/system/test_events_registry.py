"""End to end: registry A notifies the warmer, which fills the Redis of registry B (a replica
serving the same storage). A first pull of everything through B misses nothing, and B's Redis
holds what a registry fills by itself on pulling it all. Deletes evict.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.oci import Image, Index, layer, write_layout
from tests.support.redisdbs import DB, shared_env
from tests.support.redisdump import dump
from tests.support.registry import Registry, copy, delete, running_registry
from tests.support.services import running_warmer
from worker.cli.demo.registry import RegistryBinary
from worker.cli.processes import wait_until
from worker.state import StateStore

pytestmark = pytest.mark.e2e

DB_A, DB_B, DB_REF = DB.EVENTS_ORIGIN, DB.EVENTS_REPLICA, DB.EVENTS_REFERENCE
DB_STATE, DB_BROKER = DB.EVENTS_STATE, DB.EVENTS_BROKER
TOKEN = "e2e-token"
IMAGES = ("team/app:v1", "other/app:v1", "multi/platform:v1", "mounted/app:v1")


def _dirname(name: str) -> str:
    return name.replace("/", "_").replace(":", "_")


def _pull_all(registry: Registry, into: Path) -> None:
    for name in IMAGES:
        registry.pull(name, into / _dirname(name))


@pytest.fixture
def dbs(redis_proc: Any) -> Iterator[dict[int, redis.Redis]]:
    clients: dict[int, redis.Redis] = {
        db: redis.Redis(host=redis_proc.host, port=redis_proc.port, db=db)
        for db in (DB_A, DB_B, DB_REF, DB_STATE, DB_BROKER)
    }
    for c in clients.values():
        c.flushdb()
    yield clients
    for c in clients.values():
        c.flushdb()
        c.close()


@pytest.fixture
def warmer(
    redis_proc: Any, tmp_path: Path, dbs: dict[int, redis.Redis], binary: RegistryBinary
) -> Iterator[str]:
    """``warmer webhook`` and ``warmer worker`` as processes; yields the receiver's URL."""
    env = {
        **shared_env(redis_proc, cache=DB_B, state=DB_STATE, broker=DB_BROKER),
        "WARMER_STORAGE_ROOT": str(tmp_path / "storage"),
        "WARMER_WEBHOOK_TOKEN": TOKEN,
        "WARMER_REGISTRY_VERSION": binary.version.value,
    }
    (tmp_path / "storage").mkdir()
    with running_warmer(env, tmp_path) as url:
        yield url


def test_a_replica_is_warm_before_its_first_pull(
    warmer: str,
    redis_proc: Any,
    tmp_path: Path,
    dbs: dict[int, redis.Redis],
    binary: RegistryBinary,
) -> None:
    root = tmp_path / "storage"
    base = f"redis://{redis_proc.host}:{redis_proc.port}"
    shared = layer("shared.txt", b"shared by two repositories")
    only_other = layer("b.txt", b"b")
    images: dict[str, Image | Index] = {
        "team/app:v1": Image([shared, layer("a.txt", b"a")], label="team"),
        "other/app:v1": Image([shared, only_other], label="other"),
        "multi/platform:v1": Index(
            [
                Image([layer("x.txt", b"amd64")], "amd64", "m1"),
                Image([layer("x.txt", b"arm64"), shared], "arm64", "m2"),
            ]
        ),
    }
    with running_registry(
        tmp_path / "a",
        root=root,
        redis_url=f"{base}/{DB_A}",
        notify_url=f"{warmer}/events",
        token=TOKEN,
        binary=binary,
    ) as reg_a:
        for name, image in images.items():
            layout = write_layout(tmp_path / "layouts" / _dirname(name), image)
            reg_a.push(layout, name, all_platforms=isinstance(image, Index))
        copy(reg_a, "team/app:v1", "mounted/app:v1")  # blobs arrive by cross-repository mount

        # The reference: what a registry fills by itself when everything is pulled through it.
        with running_registry(
            tmp_path / "ref", root=root, redis_url=f"{base}/{DB_REF}", binary=binary
        ) as reg_ref:
            _pull_all(reg_ref, tmp_path / "ref-pull")
        reference = dump(dbs[DB_REF])

        wait_until(
            lambda: dump(dbs[DB_B]) == reference,
            timeout=60,
            what="registry B's Redis to hold what a full pull leaves",
        )

        with running_registry(
            tmp_path / "b", root=root, redis_url=f"{base}/{DB_B}", binary=binary
        ) as reg_b:
            _pull_all(reg_b, tmp_path / "b-pull")
            counts = reg_b.cache_counts()
        print(f"first pull through replica B ({binary.version.value}), warmed by events: {counts}")
        assert counts["Miss"] == 0, counts
        assert counts["Hit"] > 0

        # Deletes: a blob of one repository, then a manifest.
        blob = only_other.digest
        assert dbs[DB_B].sismember("repository::other/app::blobs", blob)
        assert delete(reg_a, f"other/app/blobs/{blob}") == 202
        wait_until(
            lambda: not dbs[DB_B].sismember("repository::other/app::blobs", blob),
            timeout=30,
            what="the deleted blob to leave other/app's membership",
        )
        assert dbs[DB_B].exists(f"blobs::{blob}")  # its data is still in the store (no GC yet)
        assert dbs[DB_B].sismember("repository::team/app::blobs", shared.digest)

        manifest = images["other/app:v1"].manifest.digest
        assert delete(reg_a, f"other/app/manifests/{manifest}") == 202
        state = StateStore(dbs[DB_STATE])
        # The manifest leaves its repository (3.x keeps it as a member, 2.x never had it);
        # the global descriptor goes once garbage-collect removes the data (reconcile), not
        # before: another repository may serve it.
        wait_until(
            lambda: (
                not dbs[DB_B].exists(f"repository::other/app::blobs::{manifest}")
                and state.pending_count() == 0
            ),
            timeout=30,
            what="the deleted manifest to leave other/app",
        )
        assert not dbs[DB_B].sismember("repository::other/app::blobs", manifest)
        assert state.dead_letter_count() == 0
        # Every manifest push (the images, the index and its children, the copy) was observed
        # from the registry's own timestamp to warm; one clock, so no skew.
        push_to_warm = state.slo.histograms()["push"]
        print(f"push to warm ({binary.version.value}): {push_to_warm.summary()}")
        assert push_to_warm.count >= len(images) + 3
        assert push_to_warm.clock_skew == 0
        assert 0 < push_to_warm.sum / push_to_warm.count < 30
        assert dbs[DB_B].exists(f"blobs::{manifest}")
