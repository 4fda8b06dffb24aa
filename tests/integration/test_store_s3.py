"""The S3 store on moto's server: the same answers as the filesystem store over the same tree,
and a re-warm that lists instead of reading object by object."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis
from celery.contrib.testing.worker import start_worker

from bench.layout import LayoutWriter
from bench.s3_endpoint import ACCESS_KEY, REGION, SECRET_KEY, aws_environment, client, put_tree
from tasks import worker_app
from tests.support.redisdbs import DB, shared_env
from tests.support.redisdump import dump
from worker.cache import BlobDescriptorCache
from worker.celeryapp.names import REWARM_TASK
from worker.cli.processes import wait_until
from worker.config.settings import load_settings
from worker.core.blobservice import CachedBlobService
from worker.core.fanout import plan
from worker.core.reconcile import reconcile
from worker.core.rewarm import SHARDS, rewarm, summarize
from worker.errors import BlobNotFoundError, StoreUnavailableError
from worker.registry.descriptor import Descriptor
from worker.registry.versions import RegistryVersion
from worker.state import StateStore
from worker.storage import paths
from worker.storage.filesystem import FilesystemStore
from worker.storage.s3 import S3Store

ROOT = "/srv/registry"
_buckets = itertools.count()


def _store(endpoint: str, bucket: str, root: str = ROOT) -> S3Store:
    return S3Store(
        bucket,
        root,
        region=REGION,
        endpoint=endpoint,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
    )


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"store-test-{next(_buckets)}"
    client(s3_endpoint).create_bucket(Bucket=name)
    return name


def _upload(layout: LayoutWriter, endpoint: str, bucket: str) -> None:
    put_tree(client(endpoint), bucket, ROOT.lstrip("/") + "/", layout.store.root)


def test_keys_are_the_rootdirectory_without_its_slash_then_the_driver_path(
    s3_endpoint: str, bucket: str
) -> None:
    digest = "sha256:" + "ab" * 32
    store = _store(s3_endpoint, bucket, "/srv/registry/")
    assert store.key(paths.blob_data(digest)) == (
        f"srv/registry/docker/registry/v2/blobs/sha256/ab/{'ab' * 32}/data"
    )
    assert _store(s3_endpoint, bucket, "").key(paths.layer_link("team/app", digest)) == (
        f"docker/registry/v2/repositories/team/app/_layers/sha256/{'ab' * 32}/link"
    )


def test_answers_as_the_filesystem_store_does(
    layout: LayoutWriter, s3_endpoint: str, bucket: str
) -> None:
    manifest, blobs = layout.image("team/app", "v1", b"one", b"two")
    layout.image("org/team/app", "v1", b"three")
    gone = layout.blob(b"collected")
    layout.link("team/app", gone)
    bad = layout.blob(b"mislinked")
    layout.link("team/app", bad)
    _upload(layout, s3_endpoint, bucket)
    s3 = client(s3_endpoint)
    s3.delete_object(Bucket=bucket, Key=ROOT.lstrip("/") + paths.blob_data(gone))
    s3.put_object(
        Bucket=bucket, Key=ROOT.lstrip("/") + paths.layer_link("team/app", bad), Body=b"sha256:0"
    )
    (layout.store.root / paths.blob_data(gone).lstrip("/")).unlink()
    (layout.store.root / paths.layer_link("team/app", bad).lstrip("/")).write_text("sha256:0")
    fs, store = layout.store, _store(s3_endpoint, bucket)
    store.check()
    assert sorted(store.repositories()) == sorted(fs.repositories()) == ["org/team/app", "team/app"]
    for name in ("team/app", "org/team/app"):
        assert list(store.layers(name)) == sorted(fs.layers(name))
        assert list(store.revisions(name)) == sorted(fs.revisions(name))
        assert store.has_repository(name)
    assert not store.has_repository("team")
    wanted = [*blobs, gone, bad, manifest]
    assert _shown(store.fetch_many("team/app", wanted)) == _shown(fs.fetch_many("team/app", wanted))
    assert _shown(store.fetch_many("team/app", [manifest], manifests=True)) == _shown(
        fs.fetch_many("team/app", [manifest], manifests=True)
    )
    assert store.manifest("team/app", manifest) == fs.manifest("team/app", manifest)
    assert store.stat(blobs[0]) == fs.stat(blobs[0])
    assert store.exists("team/app", blobs[1])
    assert not store.exists("team/app", gone)
    with pytest.raises(BlobNotFoundError):
        store.manifest("org/team/app", manifest)
    with pytest.raises(BlobNotFoundError):
        store.stat(gone)


def _shown(results: Sequence[Descriptor | Exception]) -> list[object]:
    return [type(r).__name__ if isinstance(r, Exception) else r for r in results]


def test_a_missing_bucket_is_unavailable(s3_endpoint: str) -> None:
    with pytest.raises(StoreUnavailableError, match="no-such-bucket"):
        _store(s3_endpoint, "no-such-bucket").check()


def test_an_event_fetch_costs_what_the_registrys_miss_costs(
    layout: LayoutWriter, s3_endpoint: str, bucket: str
) -> None:
    digest = layout.blob(b"layer")
    layout.link("team/app", digest)
    _upload(layout, s3_endpoint, bucket)
    store = _store(s3_endpoint, bucket)
    before = store.requests
    (found,) = store.fetch_many("team/app", [digest])
    assert isinstance(found, Descriptor)
    assert store.requests - before == 2  # GET the link, HEAD the data


def test_rewarm_lists_and_fills_what_the_filesystem_rewarm_fills(
    layout: LayoutWriter, s3_endpoint: str, bucket: str, cache_redis: redis.Redis
) -> None:
    # Over two pages of links and of blobs, with blobs of other repositories between them.
    big = [layout.blob(f"big {i}".encode()) for i in range(1100)]
    for d in big:
        layout.link("big/repo", d)
    for i in range(200):
        layout.blob(f"unlinked {i}".encode())
    layout.image("team/app", "v1", b"one", big[0].encode())
    _upload(layout, s3_endpoint, bucket)
    version = RegistryVersion.V3
    fs_summary = rewarm(CachedBlobService(BlobDescriptorCache(cache_redis, version), layout.store))
    expected = dump(cache_redis)
    cache_redis.flushdb()
    store = _store(s3_endpoint, bucket)
    service = CachedBlobService(BlobDescriptorCache(cache_redis, version), store)
    summary = rewarm(service)
    assert dump(cache_redis) == expected
    assert (summary.blobs, summary.manifests, summary.errors) == (
        fs_summary.blobs,
        fs_summary.manifests,
        0,
    )
    assert summary.s3_requests == store.requests - 1  # all but the bucket check before it
    links = summary.blobs + summary.manifests
    # About two list requests a thousand links (links, then sizes), plus the walk and the
    # few prefixes a large repository is listed by in parallel: far below 0.02 a link.
    assert summary.s3_requests <= 0.02 * links, summary
    again = rewarm(service)
    assert (again.hits, again.misses) == (links, 0)
    assert again.s3_requests < summary.s3_requests  # the hits need no sizes


def test_the_shards_of_a_large_repository_leave_what_one_rewarm_leaves(
    layout: LayoutWriter, s3_endpoint: str, bucket: str, cache_redis: redis.Redis
) -> None:
    for i in range(40):
        layout.image("big", f"v{i}", f"layer {i}".encode())
    _upload(layout, s3_endpoint, bucket)
    cache = BlobDescriptorCache(cache_redis, RegistryVersion.V3)
    whole = rewarm(CachedBlobService(cache, _store(s3_endpoint, bucket))).as_dict()
    expected = dump(cache_redis)
    cache_redis.flushdb()
    store = _store(s3_endpoint, bucket)  # a new one: no folder listing kept from the walk
    chunks = [(c.names, c.shard) for c in plan(store, [], large=5)]
    assert chunks == [(["big"], shard) for shard in SHARDS]
    service = CachedBlobService(cache, store)
    parts = [rewarm(service, ["big"], shard=shard).as_dict() for shard in SHARDS]
    assert dump(cache_redis) == expected
    total = summarize(parts)
    for key in ("repositories", "blobs", "manifests", "misses", "errors"):
        assert total[key] == whole[key], key


def test_the_fanned_out_rewarm_of_a_bucket_equals_the_in_process_one(
    layout: LayoutWriter,
    s3_endpoint: str,
    bucket: str,
    cache_redis: redis.Redis,
    state: StateStore,
    redis_proc: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layout.image("team/app", "v1", b"shared", b"a")
    layout.image("other/app", "v1", b"shared", b"b")
    _upload(layout, s3_endpoint, bucket)
    for key, value in aws_environment(s3_endpoint, base={}).items():
        monkeypatch.setenv(key, value)  # what a worker's environment gives boto3
    env = {
        **shared_env(redis_proc, broker=DB.S3_FANOUT_BROKER),
        "WARMER_STORAGE_URL": f"s3://{bucket}{ROOT}",
    }
    settings = load_settings(**{k.removeprefix("WARMER_").lower(): v for k, v in env.items()})
    app = worker_app(settings)
    app.conf.worker_hijack_root_logger = False
    with start_worker(app, pool="solo", perform_ping_check=False):
        app.send_task(REWARM_TASK).get(timeout=60)
        wait_until(lambda: state.last("rewarm") is not None, timeout=60, what="the summary")
    fanned = state.last("rewarm")
    assert fanned is not None
    warmed = dump(cache_redis)
    cache_redis.flushdb()
    cache = BlobDescriptorCache(cache_redis, settings.registry_version)
    in_process = rewarm(CachedBlobService(cache, _store(s3_endpoint, bucket)))
    assert warmed == dump(cache_redis) != {}
    for key in ("repositories", "blobs", "manifests", "misses", "errors"):
        assert fanned[key] == in_process.as_dict()[key], key
    assert fanned["s3_requests"] > 0


def test_reconcile_on_s3_evicts_what_garbage_collect_removed(
    layout: LayoutWriter, s3_endpoint: str, bucket: str, cache_redis: redis.Redis
) -> None:
    _, blobs = layout.image("team/app", "v1", b"kept", b"collected")
    _upload(layout, s3_endpoint, bucket)
    store = _store(s3_endpoint, bucket)
    cache = BlobDescriptorCache(cache_redis, RegistryVersion.V2)
    rewarm(CachedBlobService(cache, store))
    client(s3_endpoint).delete_object(
        Bucket=bucket, Key=ROOT.lstrip("/") + paths.blob_data(blobs[-1])
    )
    summary = reconcile(cache, store)
    assert (summary.evicted_members, summary.evicted_descriptors) == (1, 1)
    assert summary.s3_requests > 0
    assert cache.contains("team/app", blobs[0])
    assert not cache.contains("team/app", blobs[-1])


def large_cache_then_deletes(
    layout: LayoutWriter, s3_endpoint: str, bucket: str, cache_redis: redis.Redis
) -> tuple[BlobDescriptorCache, list[str], list[str], list[str]]:
    """300 blobs of big/repo on S3, warmed, then 3 garbage-collected (data gone) and 2
    unlinked behind the cache's back: the cache, the blobs, the collected, the unlinked."""
    blobs = [layout.blob(f"layer {i}".encode()) for i in range(300)]
    for d in blobs:
        layout.link("big/repo", d)
    _upload(layout, s3_endpoint, bucket)
    cache = BlobDescriptorCache(cache_redis, RegistryVersion.V2)
    rewarm(CachedBlobService(cache, _store(s3_endpoint, bucket)))
    s3, root = client(s3_endpoint), ROOT.lstrip("/")
    collected, unlinked = blobs[10:13], blobs[200:202]
    for d in collected:
        s3.delete_object(Bucket=bucket, Key=root + paths.blob_data(d))
    for d in unlinked:
        s3.delete_object(Bucket=bucket, Key=root + paths.layer_link("big/repo", d))
    return cache, blobs, collected, unlinked


def test_reconcile_of_a_large_cache_lists_instead_of_checking_entry_by_entry(
    layout: LayoutWriter, s3_endpoint: str, bucket: str, cache_redis: redis.Redis
) -> None:
    cache, blobs, collected, unlinked = large_cache_then_deletes(
        layout, s3_endpoint, bucket, cache_redis
    )
    summary = reconcile(cache, _store(s3_endpoint, bucket))
    assert (summary.members, summary.evicted_members) == (300, 5)
    assert (summary.descriptors, summary.evicted_descriptors) == (300, 3)
    assert summary.errors == 0
    assert {d for d in blobs if not cache.contains("big/repo", d)} == {*collected, *unlinked}
    # A GET and a HEAD an entry would be 900 requests: the links and blobs, listed, are few.
    assert summary.s3_requests <= 10, summary


def test_the_filesystem_store_makes_no_requests(tmp_path: Path) -> None:
    assert FilesystemStore(tmp_path).requests == 0


def test_s3_compatible_endpoints_are_addressed_by_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # However the endpoint is given (AWS_ENDPOINT_URL_S3 here), a store that is not AWS's own
    # gets path-style requests: http://minio:9000/BUCKET/KEY, not http://BUCKET.minio:9000/KEY.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://minio:9000")
    assert _url(S3Store("registry", region=REGION, access_key="a", secret_key="b")).startswith(
        "http://minio:9000/registry/k?"
    )
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    aws = S3Store("registry", region=REGION, access_key="a", secret_key="b")
    assert _url(aws).startswith("https://registry.s3.amazonaws.com/k?")
    virtual = S3Store(
        "registry", endpoint="http://m:1", path_style=False, access_key="a", secret_key="b"
    )
    assert _url(virtual).startswith("http://registry.m:1/k?")  # forcepathstyle: false


def _url(store: S3Store) -> str:
    # Where a GET of key "k" goes (a presigned URL is built as the request would be).
    params = {"Bucket": store.bucket, "Key": "k"}
    return store._client.generate_presigned_url("get_object", Params=params)
