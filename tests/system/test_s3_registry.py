"""End to end on S3: registries with the ``s3`` driver on moto's server, the warmer reading the
bucket. Configured both ways a deployment does it: the registry's own config.yml
(``WARMER_REGISTRY_CONFIG``), and ``WARMER_STORAGE_URL`` with the standard AWS variables.

A registry takes pushes (layers shared by two repositories, a multi-platform index); another
on an empty DB pulls everything: the reference. ``warmer rewarm`` from the bucket must fill a
replica's Redis key for key as the reference, and a first pull through it misses nothing. Then
delete + ``garbage-collect`` + ``warmer reconcile``: the deleted layer answers 404, the live
image misses nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from bench.s3_endpoint import ACCESS_KEY, REGION, SECRET_KEY, aws_environment, client
from tests.support.oci import Image, Index, layer, write_layout
from tests.support.redisdbs import DB, shared_env
from tests.support.redisdump import dump
from tests.support.registry import (
    copy,
    delete,
    free_port,
    garbage_collect,
    head_blob,
    running_registry,
)
from tests.support.services import run_warmer_json, warmer_process, webhook_ready
from worker.cli.demo.registry import Registry, RegistryBinary
from worker.cli.processes import wait_until
from worker.config.storageurl import StorageTarget, s3_url

pytestmark = pytest.mark.e2e
REPOSITORY = Path(__file__).resolve().parents[2]

PUSH_DB, REFERENCE_DB, WARM_DB = DB.S3_PUSH, DB.S3_REFERENCE, DB.S3_WARM
EVENTS_ORIGIN, EVENTS_REPLICA = DB.S3_EVENTS_ORIGIN, DB.S3_EVENTS_REPLICA
EVENTS_REFERENCE, EVENTS_STATE, EVENTS_BROKER = (
    DB.S3_EVENTS_REFERENCE,
    DB.S3_EVENTS_STATE,
    DB.S3_EVENTS_BROKER,
)
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


def _dirname(name: str) -> str:
    return name.replace("/", "_").replace(":", "_")


def _pull_all(registry: Registry, into: Path) -> None:
    for name in IMAGES:
        registry.pull(name, into / _dirname(name))


@pytest.fixture(scope="module")
def bucket(
    redis_proc: Any,
    s3_endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
    binary: RegistryBinary,
) -> Iterator[Bucket]:
    work = tmp_path_factory.mktemp("s3e2e")
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
            layout = write_layout(work / "layouts" / _dirname(image_name), image)
            reg.push(layout, image_name, all_platforms=isinstance(image, Index))
    with found.registry(REFERENCE_DB) as reg:
        _pull_all(reg, work / "reference-pull")
        assert reg.cache_counts()["Miss"] > 0  # filled by the registry itself
    found.reference = dump(clients[REFERENCE_DB])
    keys = client(s3_endpoint).list_objects_v2(Bucket=name, Prefix="registry/root/docker/")
    assert keys["KeyCount"] > 0  # the registry really stored in the bucket, under its root
    yield found
    for c in clients.values():
        c.flushdb()
        c.close()


@pytest.fixture
def warm_db(bucket: Bucket) -> Iterator[redis.Redis]:
    c = redis.Redis(host=bucket.redis_proc.host, port=bucket.redis_proc.port, db=WARM_DB)
    c.flushdb()
    yield c
    c.flushdb()
    c.close()


def _replica_config(bucket: Bucket) -> Path:
    # The replica's own config.yml: what WARMER_REGISTRY_CONFIG points the warmer at.
    with bucket.registry(WARM_DB) as reg:
        return reg.config


def _by_registry_config(bucket: Bucket, config: Path, *args: str) -> dict[str, Any]:
    # Nothing but the registry's config: storage, bucket, endpoint, keys, Redis and version.
    env = aws_environment("http://unused.invalid") | {"WARMER_REGISTRY_CONFIG": str(config)}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3"):
        env.pop(name)
    return run_warmer_json(list(args), env)


def _by_storage_url(bucket: Bucket, *args: str) -> dict[str, Any]:
    # WARMER_STORAGE_URL names bucket and root; AWS's variables give keys, region, endpoint.
    env = aws_environment(bucket.endpoint) | {
        "WARMER_STORAGE_URL": s3_url(bucket.storage.bucket, ROOT),
        "WARMER_REDIS_URL": bucket.url(WARM_DB),
        "WARMER_REGISTRY_VERSION": bucket.binary.version.value,
    }
    return run_warmer_json(list(args), env)


def test_rewarm_from_the_bucket_fills_what_the_registry_fills(
    bucket: Bucket, warm_db: redis.Redis
) -> None:
    config = _replica_config(bucket)
    summary = _by_registry_config(bucket, config, "rewarm")
    assert dump(warm_db) == bucket.reference
    assert (summary["repositories"], summary["errors"]) == (3, 0)
    assert summary["misses"] == summary["blobs"] + summary["manifests"] > 0
    # Listings, not reads: a bucket check, 7 to walk the repositories' folders, then per
    # repository 4 (its links, their blob sizes, its revisions, theirs). Reading link by link
    # (a GET and a HEAD each) would take 34 for these 17.
    assert 0 < summary["s3_requests"] <= 1 + 7 + 4 * 3
    with bucket.registry(WARM_DB) as reg:
        _pull_all(reg, bucket.workdir / "warm-pull")
        counts = reg.cache_counts()
    assert counts["Miss"] == 0, counts
    assert counts["Hit"] == counts["Request"] > 0


def test_rewarm_by_storage_url_and_aws_variables(bucket: Bucket, warm_db: redis.Redis) -> None:
    first = _by_storage_url(bucket, "rewarm")
    assert dump(warm_db) == bucket.reference
    again = _by_storage_url(bucket, "rewarm")
    assert (again["hits"], again["misses"]) == (first["misses"], 0)
    team = bucket.images["team/app:v1"]
    assert isinstance(team, Image)
    digest = team.layers[-1].digest
    assert _by_storage_url(bucket, "exists", "team/app", digest)["hit"] is True


def test_make_run_with_the_registrys_config_warms_from_the_bucket(
    bucket: Bucket, warm_db: redis.Redis, tmp_path: Path
) -> None:
    # `make run REGISTRY_CONFIG=...` as the README gives it: storage, keys, endpoint, cache
    # Redis and version from the replica's config.yml alone; broker and state where nothing
    # answers, so `up --dev` brings its own. Beat, starting on an empty cache, re-warms it.
    dead = f"redis://127.0.0.1:{free_port()}"
    env = aws_environment("http://unused.invalid") | {
        "WARMER_BROKER_URL": f"{dead}/1",
        "WARMER_STATE_URL": f"{dead}/2",
    }
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3"):
        env.pop(name)
    config = _replica_config(bucket)
    command = ["make", "-C", str(REPOSITORY), "run", f"REGISTRY_CONFIG={config}"]
    with (tmp_path / "make-run.log").open("wb") as log:
        proc = subprocess.Popen(
            [*command, f"PORT={free_port()}"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C at a terminal reaches the whole group
        )
    try:
        wait_until(
            lambda: proc.poll() is None and dump(warm_db) == bucket.reference,
            timeout=120,
            what=f"make run to warm the replica's Redis (log: {tmp_path / 'make-run.log'})",
        )
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
        wait_until(lambda: not _group(proc.pid), timeout=30, what="make run's processes to end")


def _group(pgid: int) -> list[str]:
    # Live processes of a process group (zombies are dead for our purpose).
    ps = subprocess.run(
        ["ps", "-o", "stat=", "-g", str(pgid)], check=False, capture_output=True, text=True
    )
    return [s for s in ps.stdout.split() if not s.startswith("Z")]


def test_reconcile_after_delete_and_garbage_collect(bucket: Bucket, warm_db: redis.Redis) -> None:
    _by_storage_url(bucket, "rewarm")
    team = bucket.images["team/app:v1"]
    assert isinstance(team, Image)
    doomed = team.layers[-1].digest
    with bucket.registry(WARM_DB) as reg:
        assert delete(reg, f"team/app/manifests/{team.manifest.digest}") == 202
        reg.process.terminate()
        reg.process.wait(10)
        garbage_collect(reg)  # the session's environment holds no AWS_CA_BUNDLE
    s3 = client(bucket.endpoint)
    gone = f"{ROOT.lstrip('/')}/docker/registry/v2/blobs/sha256/{doomed[7:9]}/{doomed[7:]}/data"
    assert s3.list_objects_v2(Bucket=bucket.storage.bucket, Prefix=gone)["KeyCount"] == 0
    with bucket.registry(WARM_DB) as reg:
        assert head_blob(reg, "team/app", doomed) == 200  # the stale cache answers
        summary = _by_storage_url(bucket, "reconcile")
        assert summary["evicted_members"] >= 1
        assert summary["s3_requests"] > 0
        assert head_blob(reg, "team/app", doomed) == 404
        before = reg.cache_counts()
        reg.pull("other/app:v1", bucket.workdir / "after-gc")
        after = reg.cache_counts()
    assert after["Miss"] - before["Miss"] == 0, (before, after)
    assert after["Hit"] > before["Hit"]


def test_events_warm_a_replica_from_the_bucket(
    bucket: Bucket, redis_proc: Any, tmp_path: Path
) -> None:
    # A second corpus in the same bucket, pushed through a registry that notifies the warmer
    # (webhook and worker processes reading the bucket); blobs also arrive by mount.
    dbs = {
        db: redis.Redis(host=redis_proc.host, port=redis_proc.port, db=db)
        for db in (EVENTS_ORIGIN, EVENTS_REPLICA, EVENTS_REFERENCE, EVENTS_STATE, EVENTS_BROKER)
    }
    for c in dbs.values():
        c.flushdb()
    port = free_port()
    env = aws_environment(bucket.endpoint) | {
        **shared_env(redis_proc, cache=EVENTS_REPLICA, state=EVENTS_STATE, broker=EVENTS_BROKER),
        "WARMER_STORAGE_URL": s3_url(bucket.storage.bucket, ROOT),
        "WARMER_WEBHOOK_TOKEN": "s3-e2e-token",
        "WARMER_REGISTRY_VERSION": bucket.binary.version.value,
    }
    url = f"http://127.0.0.1:{port}"
    shared = layer("events-shared.txt", b"pushed with events")
    images: dict[str, Image | Index] = {
        "events/app:v1": Image([shared, layer("e.txt", b"e")], label="events"),
        "events/multi:v1": Index(
            [
                Image([layer("y.txt", b"amd64 y")], "amd64", "e1"),
                Image([layer("y.txt", b"arm64 y"), shared], "arm64", "e2"),
            ]
        ),
    }
    names = [*images, "events/mounted:v1"]
    try:
        with (
            warmer_process(["webhook", "--port", str(port)], env, tmp_path / "webhook.log"),
            warmer_process(
                ["worker", "--pool", "solo", "--without-mingle", "--without-gossip"],
                env,
                tmp_path / "worker.log",
            ),
        ):
            wait_until(lambda: webhook_ready(url), timeout=30, what="warmer webhook /readyz")
            with running_registry(
                tmp_path / "origin",
                root=tmp_path / "unused-root",
                redis_url=bucket.url(EVENTS_ORIGIN),
                notify_url=f"{url}/events",
                token="s3-e2e-token",
                binary=bucket.binary,
                storage=bucket.storage,
                environment=bucket.environment(),
            ) as origin:
                for name, image in images.items():
                    layout = write_layout(tmp_path / "layouts" / _dirname(name), image)
                    origin.push(layout, name, all_platforms=isinstance(image, Index))
                copy(origin, "events/app:v1", "events/mounted:v1")
                with bucket.registry(EVENTS_REFERENCE) as ref:
                    for name in names:
                        ref.pull(name, tmp_path / "ref" / _dirname(name))
                reference = dump(dbs[EVENTS_REFERENCE])
                wait_until(
                    lambda: dump(dbs[EVENTS_REPLICA]) == reference,
                    timeout=60,
                    what="the replica's Redis to hold what a full pull leaves",
                )
        with bucket.registry(EVENTS_REPLICA) as replica:
            for name in names:
                replica.pull(name, tmp_path / "replica" / _dirname(name))
            counts = replica.cache_counts()
        assert counts["Miss"] == 0, counts
        assert counts["Hit"] > 0
    finally:
        for c in dbs.values():
            c.flushdb()
            c.close()
