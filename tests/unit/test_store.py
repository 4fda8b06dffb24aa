"""The filesystem store: paths, stat and fetch as the registry resolves them, streamed walks."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from bench.layout import LayoutWriter
from worker.errors import (
    BlobNotFoundError,
    InvalidDigestError,
    InvalidRepositoryNameError,
    StoreUnavailableError,
)
from worker.storage import paths
from worker.storage.filesystem import FilesystemStore

HEX = "ab" + "c" * 62
DIGEST = f"sha256:{HEX}"


def test_paths_follow_the_registry_layout(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    v2 = f"{tmp_path}/docker/registry/v2"
    assert paths.blob_data(DIGEST) == f"/docker/registry/v2/blobs/sha256/ab/{HEX}/data"
    assert store.os_path(paths.blob_data(DIGEST)) == f"{v2}/blobs/sha256/ab/{HEX}/data"
    assert store.os_path(paths.layer_link("org/team/app", DIGEST)) == (
        f"{v2}/repositories/org/team/app/_layers/sha256/{HEX}/link"
    )
    assert store.os_path(paths.revision_link("app", DIGEST)) == (
        f"{v2}/repositories/app/_manifests/revisions/sha256/{HEX}/link"
    )
    assert (
        store.os_path(paths.tag_link("app", "v1.0"))
        == f"{v2}/repositories/app/_manifests/tags/v1.0/current/link"
    )


def test_paths_refuse_invalid_names_and_digests(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    with pytest.raises(InvalidRepositoryNameError):
        store.os_path(paths.layer_link("../etc", DIGEST))
    with pytest.raises(InvalidDigestError):
        store.os_path(paths.blob_data("sha256:../../../etc/passwd"))


def test_fetch_resolves_link_then_data_and_carries_the_driver_path(layout: LayoutWriter) -> None:
    digest = layout.blob(b"hello")
    layout.link("team/app", digest)
    desc = layout.store.fetch("team/app", digest)
    assert desc.digest == digest
    assert desc.size == 5
    assert desc.media_type == "application/octet-stream"
    assert desc.path == paths.blob_data(digest)
    assert layout.store.exists("team/app", digest)


def test_fetch_refuses_a_blob_that_is_not_linked_into_the_repository(layout: LayoutWriter) -> None:
    digest = layout.blob(b"hello")
    layout.link("team/app", digest)
    with pytest.raises(BlobNotFoundError, match="not linked into other"):
        layout.store.fetch("other", digest)
    assert not layout.store.exists("other", digest)


def test_fetch_refuses_a_link_whose_data_is_gone(layout: LayoutWriter) -> None:
    digest = layout.blob(b"collected")
    layout.link("team/app", digest)
    os.remove(layout.store.os_path(paths.blob_data(digest)))
    with pytest.raises(BlobNotFoundError, match="not in the store"):
        layout.store.fetch("team/app", digest)


def test_fetch_refuses_a_link_that_names_another_digest(layout: LayoutWriter) -> None:
    digest = layout.blob(b"x")
    other = layout.blob(b"y")
    path = layout.store.os_path(paths.layer_link("team/app", digest))
    layout.link("team/app", digest)
    Path(path).write_text(other)
    with pytest.raises(BlobNotFoundError):
        layout.store.fetch("team/app", digest)


def test_stat_answers_for_the_global_blob_store(layout: LayoutWriter) -> None:
    digest = layout.blob(b"abc")
    assert layout.store.stat(digest).size == 3
    with pytest.raises(BlobNotFoundError):
        layout.store.stat("sha256:" + "0" * 64)


def test_check_refuses_a_missing_root(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError, match="does not exist"):
        FilesystemStore(tmp_path / "nope").check()


def test_repositories_walks_nested_names_and_skips_invalid_directories(
    layout: LayoutWriter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="worker.storage")
    for name in ("app", "org/app", "org/app/sub", "a/b/c/d"):
        layout.link(name, layout.blob(name.encode()))
    layout.revision("manifests-only", layout.blob(b"m"))
    bad = layout.store.root / "docker/registry/v2/repositories/Bad_Name/_layers"
    bad.mkdir(parents=True)
    (layout.store.root / "docker/registry/v2/repositories/org/_uploads/x").mkdir(parents=True)
    assert sorted(layout.store.repositories()) == [
        "a/b/c/d",
        "app",
        "manifests-only",
        "org/app",
        "org/app/sub",
    ]
    assert "Bad_Name" in caplog.text


def test_repositories_walks_names_with_a_host_component(
    layout: LayoutWriter, caplog: pytest.LogCaptureFixture
) -> None:
    # 2.8 accepts a first HOST[:PORT]/ component; the host alone is no repository.
    caplog.set_level(logging.WARNING, logger="worker.storage")
    for name in ("localhost:5000/app", "reg.example:443/team/app", "team/manifests"):
        layout.link(name, layout.blob(name.encode()))
    host_only = layout.store.root / "docker/registry/v2/repositories/localhost:5000/_layers"
    host_only.mkdir(parents=True)
    assert sorted(layout.store.repositories()) == [
        "localhost:5000/app",
        "reg.example:443/team/app",
        "team/manifests",
    ]
    assert "'localhost:5000'" in caplog.text


def test_repositories_of_an_empty_root_is_empty(store: FilesystemStore) -> None:
    assert list(store.repositories()) == []


def test_layers_and_revisions_list_what_the_registry_linked(layout: LayoutWriter) -> None:
    manifest, blobs = layout.image("team/app", "v1", b"l1", b"l2")
    store = layout.store
    assert sorted(store.layers("team/app")) == sorted(blobs)
    assert list(store.revisions("team/app")) == [manifest]
    assert store.has_repository("team/app")
    assert not store.has_repository("team")
    assert list(store.layers("nothing/here")) == []


def test_walks_skip_entries_that_are_not_digests(layout: LayoutWriter) -> None:
    layout.image("app", "v1", b"l1")
    layers = layout.store.root / "docker/registry/v2/repositories/app/_layers"
    (layers / "sha256" / "not-hex").mkdir()
    (layers / "md5" / "abc").mkdir(parents=True)
    assert len(list(layout.store.layers("app"))) == 2


def test_manifest_reads_and_parses_a_revision(layout: LayoutWriter) -> None:
    manifest, blobs = layout.image("team/app", "v1", b"l1")
    parsed = layout.store.manifest("team/app", manifest)
    assert list(parsed.blobs) == blobs
    assert json.loads(layout.store.read_manifest("team/app", manifest))["schemaVersion"] == 2
    with pytest.raises(BlobNotFoundError, match="not a revision of other"):
        layout.store.read_manifest("other", manifest)


def test_walks_are_streamed_not_listed(layout: LayoutWriter) -> None:
    for i in range(3):
        layout.link("app", layout.blob(str(i).encode()))
    walk = layout.store.layers("app")
    assert iter(walk) is walk  # a generator: nothing is read until asked for
    assert next(walk).startswith("sha256:")
