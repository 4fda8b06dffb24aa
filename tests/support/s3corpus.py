"""An S3 corpus for the registry tests: registries with the ``s3`` driver on moto's server, a
corpus pushed into a bucket, and what a registry that pulled all of it filled (the reference).
Shared by tests/system/test_s3_registry.py and tests/e2e/test_make_run_s3.py, each of which
pushes its own (a module-scoped fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.s3_endpoint import ACCESS_KEY, REGION, SECRET_KEY, aws_environment, client
from tests.support.oci import Image, Index, layer, write_layout
from tests.support.redisdbs import DB
from tests.support.redisdump import dump
from tests.support.registry import running_registry
from worker.cli.demo.registry import Registry, RegistryBinary
from worker.config.storageurl import StorageTarget

__all__ = [
    "IMAGES",
    "PUSH_DB",
    "REFERENCE_DB",
    "ROOT",
    "WARM_DB",
    "Bucket",
    "dirname",
    "pull_all",
    "pushed_bucket",
    "replica_config",
    "warm_db_client",
]

PUSH_DB, REFERENCE_DB, WARM_DB = DB.S3_PUSH, DB.S3_REFERENCE, DB.S3_WARM
IMAGES = ("team/app:v1", "other/app:v1", "multi/platform:v1")
ROOT = "/registry/root"


@dataclass
class Bucket:
    """The pushed corpus: where it is, what the registry itself filled, how to reach it."""

    storage: StorageTarget
    endpoint: str
    workdir: Path
    reference: dict[str, Any]
    redis_proc: Any
    binary: RegistryBinary
    images: dict[str, Image | Index]

    def url(self, db: int) -> str:
        return f"redis://{self.redis_proc.host}:{self.redis_proc.port}/{db}"

    def registry(self, db: int) -> AbstractContextManager[Registry]:
        return running_registry(
            self.workdir,
            root=self.workdir / "unused-root",
            redis_url=self.url(db),
            binary=self.binary,
            storage=self.storage,
            environment=self.environment(),
        )

    def environment(self) -> dict[str, str]:
        # Served by the registry itself, not redirected to the bucket: what a HEAD answers is
        # then the registry's own (cached) answer. Set as an override, the way of REGISTRY_*.
        return aws_environment(self.endpoint) | {"REGISTRY_STORAGE_REDIRECT_DISABLE": "true"}


def dirname(name: str) -> str:
    """A folder name for an image name."""
    return name.replace("/", "_").replace(":", "_")


def pull_all(registry: Registry, into: Path) -> None:
    """Pull every image of the corpus through ``registry``."""
    for name in IMAGES:
        registry.pull(name, into / dirname(name))


@contextmanager
def pushed_bucket(
    redis_proc: Any, s3_endpoint: str, work: Path, binary: RegistryBinary
) -> Iterator[Bucket]:
    """A bucket of its own on ``s3_endpoint`` with the corpus pushed through ``binary``, and
    the reference a full pull left; the DBs used are emptied afterwards."""
    name = f"registry-{binary.version.value}-{work.name}".lower().replace("_", "-")[:60]
    client(s3_endpoint).create_bucket(Bucket=name)
    storage = StorageTarget(
        "s3",
        ROOT.lstrip("/"),
        bucket=name,
        region=REGION,
        endpoint=s3_endpoint,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        path_style=True,
    )
    clients = {
        db: redis.Redis(host=redis_proc.host, port=redis_proc.port, db=db)
        for db in (PUSH_DB, REFERENCE_DB, WARM_DB)
    }
    for c in clients.values():
        c.flushdb()
    shared = layer("shared.txt", b"shared by two repositories")
    images: dict[str, Image | Index] = {
        "team/app:v1": Image([shared, layer("a.txt", b"only in team/app")], label="team"),
        "other/app:v1": Image([shared, layer("b.txt", b"b"), layer("c.txt", b"c")], label="o"),
        "multi/platform:v1": Index(
            [
                Image([layer("x.txt", b"amd64")], "amd64", "m1"),
                Image([layer("x.txt", b"arm64"), shared], "arm64", "m2"),
            ]
        ),
    }
    found = Bucket(storage, s3_endpoint, work, {}, redis_proc, binary, images)
    with found.registry(PUSH_DB) as reg:
        for image_name, image in images.items():
            layout = write_layout(work / "layouts" / dirname(image_name), image)
            reg.push(layout, image_name, all_platforms=isinstance(image, Index))
    with found.registry(REFERENCE_DB) as reg:
        pull_all(reg, work / "reference-pull")
        assert reg.cache_counts()["Miss"] > 0  # filled by the registry itself
    found.reference = dump(clients[REFERENCE_DB])
    keys = client(s3_endpoint).list_objects_v2(Bucket=name, Prefix="registry/root/docker/")
    assert keys["KeyCount"] > 0  # the registry really stored in the bucket, under its root
    yield found
    for c in clients.values():
        c.flushdb()
        c.close()


@contextmanager
def warm_db_client(bucket: Bucket) -> Iterator[redis.Redis]:
    """The replica's DB, empty before and after."""
    c = redis.Redis(host=bucket.redis_proc.host, port=bucket.redis_proc.port, db=WARM_DB)
    c.flushdb()
    yield c
    c.flushdb()
    c.close()


def replica_config(bucket: Bucket) -> Path:
    """The replica's own config.yml: what WARMER_REGISTRY_CONFIG points the warmer at."""
    with bucket.registry(WARM_DB) as reg:
        return reg.config
