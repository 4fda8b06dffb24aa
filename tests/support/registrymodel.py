"""The registry's side of the delete-wins model (tests/integration/test_delete_wins_model.py):
what its storage holds and what it does to it, kept in step with a real store (disk or S3).

Blobs are pushed (or mounted) and linked into a repository; manifests (OCI images of those
blobs) get a revision link and a tag; deletes remove a blob's link, or a manifest's revision
link (by digest: with every tag that points at it; 3.x also deletes a tag alone). Garbage-collect
marks what the manifests of every repository reference (with ``untagged``, manifests no tag
points at are deleted first, as ``garbage-collect --delete-untagged``) and deletes the data of
every other blob, linked or not: registry 3.x deletes the layer links of what it sweeps too,
2.x leaves them, linking blobs whose data is gone. None of this touches the cache: the model
does what the registry does to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from typing import Any, TypeVar

from tests.support.interleave import Storage
from worker.registry.versions import RegistryVersion
from worker.storage import paths
from worker.storage.s3 import S3Store

__all__ = [
    "BLOBS",
    "DIGESTS",
    "MANIFESTS",
    "MANIFEST_BLOBS",
    "MANIFEST_DIGESTS",
    "REPOSITORIES",
    "SIZES",
    "TARGETS",
    "Registry",
    "tag_of",
]

# Names that are prefixes of one another, as listings meet them.
REPOSITORIES = ("math", "math-voila", "a/b")
BLOBS = tuple(f"layer {i}".encode() for i in range(4))
DIGESTS = tuple("sha256:" + hashlib.sha256(b).hexdigest() for b in BLOBS)


def _manifest(config: int, layers: tuple[int, ...]) -> bytes:
    def descriptor(i: int, media_type: str) -> dict[str, object]:
        return {"mediaType": media_type, "digest": DIGESTS[i], "size": len(BLOBS[i])}

    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
            "layers": [descriptor(i, "application/vnd.oci.image.layer.v1.tar") for i in layers],
        },
        sort_keys=True,
    ).encode()


#: Two images: blob 0 as config and blob 1 as layer; blob 2 as config, blobs 3 and 1 as layers.
_IMAGES = ((0, (1,)), (2, (3, 1)))
MANIFESTS = tuple(_manifest(config, layers) for config, layers in _IMAGES)
MANIFEST_DIGESTS = tuple("sha256:" + hashlib.sha256(m).hexdigest() for m in MANIFESTS)
#: What each manifest references.
MANIFEST_BLOBS = {
    m: tuple(DIGESTS[i] for i in (config, *layers))
    for m, (config, layers) in zip(MANIFEST_DIGESTS, _IMAGES, strict=True)
}
#: Everything a writer can be after, and what a delete can take: blobs, then manifests.
TARGETS = DIGESTS + MANIFEST_DIGESTS
SIZES = {d: len(b) for d, b in zip(TARGETS, BLOBS + MANIFESTS, strict=True)}
_T = TypeVar("_T")
_CONTENT = dict(zip(TARGETS, BLOBS + MANIFESTS, strict=True))


class Registry:
    """A registry's storage, as the model knows it and as the real store holds it."""

    def __init__(self, storage: Storage, version: RegistryVersion) -> None:
        self.storage = storage
        self.version = version
        _wipe(storage)  # a fresh store every example
        self.links: set[tuple[str, str]] = set()  # layer links
        self.revisions: set[tuple[str, str]] = set()  # manifest revision links
        self.tags: dict[tuple[str, str], str] = {}  # (repository, tag) -> manifest
        self.data: set[str] = set()

    def linked(self, repository: str, digest: str) -> bool:
        """``digest`` is linked into ``repository`` (a blob's link, or a manifest's revision)."""
        return (repository, digest) in self.links or (repository, digest) in self.revisions

    def live(self, repository: str, digest: str) -> bool:
        """Linked, and its data is there: what a pull can get."""
        return self.linked(repository, digest) and digest in self.data

    def push_blob(self, repository: str, digest: str) -> None:
        """A blob pushed (or mounted: its data is there already) and linked."""
        self._put(paths.blob_data(digest), _CONTENT[digest], digest, self.data)
        self._put(paths.layer_link(repository, digest), digest, (repository, digest), self.links)

    def push_manifest(self, repository: str, manifest: str) -> list[str]:
        """An image pushed: the blobs it lacks, then its manifest and tag; return the blobs
        pushed (each notified, as the manifest is)."""
        pushed = [d for d in MANIFEST_BLOBS[manifest] if not self.live(repository, d)]
        for digest in pushed:
            self.push_blob(repository, digest)
        self._put(paths.blob_data(manifest), _CONTENT[manifest], manifest, self.data)
        link = paths.revision_link(repository, manifest)
        self._put(link, manifest, (repository, manifest), self.revisions)
        tag = tag_of(manifest)
        if (repository, tag) not in self.tags:
            self.storage.write(paths.tag_link(repository, tag), manifest.encode())
            self.tags[(repository, tag)] = manifest
        return pushed

    def delete(self, repository: str, digest: str) -> bool:
        """DELETE of a blob, or of a manifest by digest (its tags go too); False: not linked."""
        if (repository, digest) in self.links:
            self._unlink(repository, digest)
            return True
        if (repository, digest) not in self.revisions:
            return False
        self._unlink_revision(repository, digest)
        for (name, tag), manifest in list(self.tags.items()):
            if name == repository and manifest == digest:
                self.delete_tag(repository, tag)
        return True

    def delete_tag(self, repository: str, tag: str) -> None:
        """DELETE of a manifest by tag (3.x): the tag alone; the revision stays."""
        if self.tags.pop((repository, tag), None) is not None:
            self.storage.remove(paths.tag_link(repository, tag))

    def garbage_collect(self, *, untagged: bool) -> None:
        """What ``garbage-collect`` deletes; no event tells, and the cache keeps its entries."""
        if untagged:
            tagged = {(name, m) for (name, _), m in self.tags.items()}
            for repository, manifest in sorted(self.revisions - tagged):
                self._unlink_revision(repository, manifest)
        manifests = {m for _, m in self.revisions}
        marked = manifests.union(*(MANIFEST_BLOBS[m] for m in manifests))
        for digest in sorted(self.data - marked):
            self.storage.remove(paths.blob_data(digest))
            self.data.discard(digest)
            if self.version.collects_links:
                for repository, linked in sorted(self.links):
                    if linked == digest:
                        self._unlink(repository, digest)

    def _put(self, path: str, content: bytes | str, item: _T, where: set[_T]) -> None:
        # What is there already is the same: not written again (an S3 request each).
        if item not in where:
            self.storage.write(path, content.encode() if isinstance(content, str) else content)
            where.add(item)

    def _unlink(self, repository: str, digest: str) -> None:
        self.storage.remove(paths.layer_link(repository, digest))
        self.links.discard((repository, digest))

    def _unlink_revision(self, repository: str, manifest: str) -> None:
        self.storage.remove(paths.revision_link(repository, manifest))
        self.revisions.discard((repository, manifest))


def _wipe(storage: Storage) -> None:
    # Nothing stored any more, as a new registry's storage: on S3 in one request a thousand
    # keys; on disk the old root moved aside (a rename, where removing it took 30 ms).
    store = storage.store
    if isinstance(store, S3Store):
        for page in store._client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket):
            keys: list[Any] = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                store._client.delete_objects(Bucket=store.bucket, Delete={"Objects": keys})
        return
    if store.root.exists():
        os.rename(store.root, store.root.with_name(f"{store.root.name}-{uuid.uuid4().hex}"))
    store.root.mkdir(parents=True)


def tag_of(manifest: str) -> str:
    """The tag the model pushes ``manifest`` under."""
    return f"v{MANIFEST_DIGESTS.index(manifest)}"
