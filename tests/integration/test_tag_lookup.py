"""A tag resolved in the store as the registry resolves it (its ``current/link``): the
filesystem store and the S3 store (moto) give the same answers over the same tree."""

from __future__ import annotations

import itertools

import pytest

from bench.layout import LayoutWriter
from bench.s3_endpoint import ACCESS_KEY, REGION, SECRET_KEY, client, put_tree
from worker.errors import InvalidReferenceError, StoreError, TagNotFoundError
from worker.storage import Store, paths
from worker.storage.s3 import S3Store

ROOT = "srv/registry"
_buckets = itertools.count()


@pytest.fixture(params=["filesystem", "s3"])
def tagged(
    request: pytest.FixtureRequest, layout: LayoutWriter, s3_endpoint: str
) -> tuple[Store, str]:
    manifest, _ = layout.image("team/app", "v1", b"a")
    junk = layout.store.os_path(paths.tag_link("team/app", "junk"))
    layout.tag("team/app", "junk", manifest)
    with open(junk, "w") as f:
        f.write("not a digest")
    if request.param == "filesystem":
        return layout.store, manifest
    bucket = f"tags-{next(_buckets)}"
    s3 = client(s3_endpoint)
    s3.create_bucket(Bucket=bucket)
    put_tree(s3, bucket, ROOT + "/", layout.store.root)
    store = S3Store(
        bucket,
        ROOT,
        region=REGION,
        endpoint=s3_endpoint,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
    )
    return store, manifest


def test_a_tag_resolves_to_the_manifest_its_link_names(tagged: tuple[Store, str]) -> None:
    store, manifest = tagged
    assert store.resolve_tag("team/app", "v1") == manifest


def test_an_absent_tag_or_repository_is_not_found(tagged: tuple[Store, str]) -> None:
    store, _ = tagged
    with pytest.raises(TagNotFoundError, match="no tag 'v2'"):
        store.resolve_tag("team/app", "v2")
    with pytest.raises(TagNotFoundError):
        store.resolve_tag("other/app", "v1")


def test_a_link_that_holds_no_digest_is_a_store_error(tagged: tuple[Store, str]) -> None:
    store, _ = tagged
    with pytest.raises(StoreError, match="holds no digest") as caught:
        store.resolve_tag("team/app", "junk")
    assert not isinstance(caught.value, TagNotFoundError)


def test_an_invalid_tag_never_becomes_a_path(tagged: tuple[Store, str]) -> None:
    store, _ = tagged
    with pytest.raises(InvalidReferenceError):
        store.resolve_tag("team/app", "../../_layers")
