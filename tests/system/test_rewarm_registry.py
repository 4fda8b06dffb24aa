"""End to end with a real registry: ``warmer rewarm`` leaves what the registry's own pulls leave.

A registry on the session's redis-server takes pushes of images built here (layers shared by two
repositories, a multi-platform index). A second registry on an empty DB pulls everything: its
cache is the reference. Then ``warmer rewarm`` fills another empty DB, which must equal the
reference key for key, and a first pull through a registry on it must miss nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.oci import Image, Index, layer, write_layout
from tests.support.redisdbs import DB
from tests.support.redisdump import dump
from tests.support.registry import running_registry
from tests.support.services import run_warmer_json
from worker.cli.demo.registry import RegistryBinary
from worker.registry.versions import RegistryVersion

pytestmark = pytest.mark.e2e

PUSH_DB, REFERENCE_DB, WARM_DB = DB.REWARM_PUSH, DB.REWARM_REFERENCE, DB.REWARM_WARM
IMAGES = ("team/app:v1", "other/app:v1", "multi/platform:v1")


@dataclass
class Pushed:
    root: Path
    workdir: Path
    reference: dict[str, Any]
    redis_proc: Any
    binary: RegistryBinary

    def url(self, db: int) -> str:
        return f"redis://{self.redis_proc.host}:{self.redis_proc.port}/{db}"


def _dirname(name: str) -> str:
    # skopeo reads "oci:PATH:TAG": a colon in the path would be taken for the tag.
    return name.replace("/", "_").replace(":", "_")


def _pull_all(registry: Any, into: Path) -> None:
    for name in IMAGES:
        registry.pull(name, into / _dirname(name))


@pytest.fixture(scope="module")
def pushed(
    redis_proc: Any, tmp_path_factory: pytest.TempPathFactory, binary: RegistryBinary
) -> Iterator[Pushed]:
    work = tmp_path_factory.mktemp("e2e")
    base = f"redis://{redis_proc.host}:{redis_proc.port}"
    root = work / "storage"
    clients = {
        db: redis.Redis(host=redis_proc.host, port=redis_proc.port, db=db)
        for db in (PUSH_DB, REFERENCE_DB, WARM_DB)
    }
    for c in clients.values():
        c.flushdb()
    shared = layer("shared.txt", b"shared by two repositories")
    images: dict[str, Image | Index] = {
        "team/app:v1": Image([shared, layer("a.txt", b"a")], label="team"),
        "other/app:v1": Image([shared, layer("b.txt", b"b"), layer("c.txt", b"c")], label="other"),
        "multi/platform:v1": Index(
            [
                Image([layer("x.txt", b"amd64")], "amd64", "m1"),
                Image([layer("x.txt", b"arm64"), shared], "arm64", "m2"),
            ]
        ),
    }
    with running_registry(work, root=root, redis_url=f"{base}/{PUSH_DB}", binary=binary) as reg:
        for name, image in images.items():
            layout = write_layout(work / "layouts" / _dirname(name), image)
            reg.push(layout, name, all_platforms=isinstance(image, Index))
    with running_registry(
        work, root=root, redis_url=f"{base}/{REFERENCE_DB}", binary=binary
    ) as reg:
        _pull_all(reg, work / "reference-pull")
        cold = reg.cache_counts()
        assert cold["Miss"] > 0  # the reference was filled by the registry itself
        print(f"cold full pull through an empty cache: {cold}")
    reference = dump(clients[REFERENCE_DB])
    yield Pushed(root, work, reference, redis_proc, binary)
    for c in clients.values():
        c.flushdb()
        c.close()


def _warmer(pushed: Pushed, *args: str, version: str | None = None) -> dict[str, Any]:
    env = {
        **os.environ,
        "WARMER_REDIS_URL": pushed.url(WARM_DB),
        "WARMER_STORAGE_ROOT": str(pushed.root),
        "WARMER_REGISTRY_VERSION": version or pushed.binary.version.value,
    }
    return run_warmer_json(list(args), env)


@pytest.fixture
def warm_db(pushed: Pushed) -> Iterator[redis.Redis]:
    client = redis.Redis(host=pushed.redis_proc.host, port=pushed.redis_proc.port, db=WARM_DB)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_rewarm_leaves_exactly_what_the_registry_fills_on_a_full_pull(
    pushed: Pushed, warm_db: redis.Redis
) -> None:
    summary = _warmer(pushed, "rewarm")
    assert dump(warm_db) == pushed.reference
    # 3 repositories; blobs: 3 + 4 + 5 (two configs, three layers); manifests: 1 + 1 + 3.
    assert (summary["repositories"], summary["blobs"], summary["manifests"]) == (3, 12, 5)
    assert (summary["misses"], summary["errors"]) == (17, 0)
    again = _warmer(pushed, "rewarm")
    assert (again["hits"], again["misses"]) == (17, 0)


def test_a_first_pull_through_the_warmed_cache_misses_nothing(
    pushed: Pushed, warm_db: redis.Redis
) -> None:
    # A 2.x registry is also served by the 2.0+2 fill (both field sets in one hash).
    versions = [pushed.binary.version.value]
    if pushed.binary.version is RegistryVersion.V2:
        versions.append(RegistryVersion.V2_0_AND_V2.value)
    for version in versions:
        warm_db.flushdb()
        _warmer(pushed, "rewarm", version=version)
        with running_registry(
            pushed.workdir, root=pushed.root, redis_url=pushed.url(WARM_DB), binary=pushed.binary
        ) as reg:
            _pull_all(reg, pushed.workdir / f"warm-pull-{version}")
            counts = reg.cache_counts()
        print(f"first full pull through the cache warmed for {version}: {counts}")
        assert counts["Miss"] == 0, (version, counts)
        assert counts["Hit"] == counts["Request"] > 0


def test_fetch_and_exists_agree_with_the_registry(pushed: Pushed, warm_db: redis.Redis) -> None:
    blob = next(k for k in pushed.reference if k.startswith("repository::team/app::blobs::"))
    digest = blob.rsplit("::", 1)[1]
    fetched = _warmer(pushed, "fetch", "team/app", digest)
    assert fetched["size"] == int(pushed.reference[f"blobs::{digest}"]["size"])
    assert _warmer(pushed, "exists", "team/app", digest)["hit"] is True
