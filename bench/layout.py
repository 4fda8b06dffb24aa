"""Writes a registry storage layout for tests and benchmarks, through the store's own paths.

In bench/ because the benchmarks may not import tests/; the tests import it from here."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from worker.storage import paths
from worker.storage.filesystem import FilesystemStore

__all__ = ["LayoutWriter"]


class LayoutWriter:
    """Puts blobs, links, manifest revisions and tags where a registry would."""

    def __init__(self, root: Path) -> None:
        self.store = FilesystemStore(root)

    def blob(self, data: bytes) -> str:
        """Store ``data`` as a blob; return its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        _write(self.store.os_path(paths.blob_data(digest)), data)
        return digest

    def link(self, repository: str, digest: str) -> None:
        """Link a blob into a repository (``_layers``)."""
        _write(self.store.os_path(paths.layer_link(repository, digest)), digest.encode())

    def revision(self, repository: str, digest: str) -> None:
        """Record a manifest revision of a repository."""
        _write(self.store.os_path(paths.revision_link(repository, digest)), digest.encode())

    def tag(self, repository: str, tag: str, digest: str) -> None:
        """Point a tag at a manifest."""
        _write(self.store.os_path(paths.tag_link(repository, tag)), digest.encode())

    def image(self, repository: str, tag: str, *layer_data: bytes) -> tuple[str, list[str]]:
        """A pushed OCI image: config, layers, manifest, tag. Returns (manifest, blob digests)."""
        config = self.blob(json.dumps({"layers": len(layer_data), "repo": repository}).encode())
        layers = [self.blob(d) for d in layer_data]
        for d in (config, *layers):
            self.link(repository, d)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"digest": config, "size": 1, "mediaType": "application/octet-stream"},
                "layers": [{"digest": d, "size": 1, "mediaType": "x"} for d in layers],
            }
        ).encode()
        digest = self.blob(manifest)
        self.revision(repository, digest)
        self.tag(repository, tag, digest)
        return digest, [config, *layers]

    def index(self, repository: str, tag: str, *children: tuple[str, str]) -> str:
        """A pushed OCI index of ``children`` (``(platform, manifest digest)``, platform as
        ``os/arch[/variant]``, the manifests already revisions of the repository), tagged.
        Returns the index's digest."""
        entries = []
        for platform, child in children:
            os_, arch, *variant = platform.split("/")
            described = {"os": os_, "architecture": arch}
            if variant:
                described["variant"] = variant[0]
            entries.append(
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": child,
                    "size": 1,
                    "platform": described,
                }
            )
        body = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        }
        digest = self.blob(json.dumps(body).encode())
        self.revision(repository, digest)
        self.tag(repository, tag, digest)
        return digest


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
