"""Real registries on S3: registries with the ``s3`` driver on moto's server, the warmer reading the
bucket. Configured both ways a deployment does it: the registry's own config.yml
(``WARMER_REGISTRY_CONFIG``), and ``WARMER_STORAGE_URL`` with the standard AWS variables.

A registry takes pushes (layers shared by two repositories, a multi-platform index); another
on an empty DB pulls everything: the reference. ``warmer rewarm`` from the bucket must fill a
replica's Redis key for key as the reference, and a first pull through it misses nothing. Then
delete + ``garbage-collect`` + ``warmer reconcile``: the deleted layer answers 404, the live
image misses nothing. ``make run`` with the replica's config: tests/e2e/test_make_run_s3.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bench.s3_endpoint import aws_environment, client
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
from tests.support.s3corpus import (
    ROOT,
    WARM_DB,
    Bucket,
    dirname,
    pull_all,
    pushed_bucket,
    replica_config,
    warm_db_client,
)
from tests.support.services import run_warmer_json, warmer_process, webhook_ready
from worker.cli.demo.registry import RegistryBinary
from worker.cli.processes import wait_until
from worker.config.storageurl import s3_url

pytestmark = pytest.mark.e2e

EVENTS_ORIGIN, EVENTS_REPLICA = DB.S3_EVENTS_ORIGIN, DB.S3_EVENTS_REPLICA
EVENTS_REFERENCE, EVENTS_STATE, EVENTS_BROKER = (
    DB.S3_EVENTS_REFERENCE,
    DB.S3_EVENTS_STATE,
    DB.S3_EVENTS_BROKER,
)


@pytest.fixture(scope="module")
def bucket(
    redis_proc: Any,
    s3_endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
    binary: RegistryBinary,
) -> Iterator[Bucket]:
    with pushed_bucket(redis_proc, s3_endpoint, tmp_path_factory.mktemp("s3e2e"), binary) as b:
        yield b


@pytest.fixture
def warm_db(bucket: Bucket) -> Iterator[redis.Redis]:
    with warm_db_client(bucket) as c:
        yield c


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
    config = replica_config(bucket)
    summary = _by_registry_config(bucket, config, "rewarm")
    assert dump(warm_db) == bucket.reference
    assert (summary["repositories"], summary["errors"]) == (3, 0)
    assert summary["misses"] == summary["blobs"] + summary["manifests"] > 0
    # Listings, not reads: a bucket check, 7 to walk the repositories' folders, then per
    # repository 4 (its links, their blob sizes, its revisions, theirs). Reading link by link
    # (a GET and a HEAD each) would take 34 for these 17.
    assert 0 < summary["s3_requests"] <= 1 + 7 + 4 * 3
    with bucket.registry(WARM_DB) as reg:
        pull_all(reg, bucket.workdir / "warm-pull")
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
                    layout = write_layout(tmp_path / "layouts" / dirname(name), image)
                    origin.push(layout, name, all_platforms=isinstance(image, Index))
                copy(origin, "events/app:v1", "events/mounted:v1")
                with bucket.registry(EVENTS_REFERENCE) as ref:
                    for name in names:
                        ref.pull(name, tmp_path / "ref" / dirname(name))
                reference = dump(dbs[EVENTS_REFERENCE])
                wait_until(
                    lambda: dump(dbs[EVENTS_REPLICA]) == reference,
                    timeout=60,
                    what="the replica's Redis to hold what a full pull leaves",
                )
        with bucket.registry(EVENTS_REPLICA) as replica:
            for name in names:
                replica.pull(name, tmp_path / "replica" / dirname(name))
            counts = replica.cache_counts()
        assert counts["Miss"] == 0, counts
        assert counts["Hit"] > 0
    finally:
        for c in dbs.values():
            c.flushdb()
            c.close()
