"""Small OCI images built in-process (tar + gzip + JSON), written as OCI layouts for skopeo."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.registry.mediatypes import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST

__all__ = ["Blob", "Image", "Index", "layer", "write_layout"]


@dataclass(frozen=True)
class Blob:
    """Bytes with their media type; the digest is computed."""

    data: bytes
    media_type: str
    diff_id: str | None = None  # for layers: the digest of the uncompressed tar

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.data),
            **extra,
        }


def layer(name: str, content: bytes) -> Blob:
    """A gzip'd tar holding one file; same inputs give the same bytes (so layers can be shared)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    zipped = gzip.compress(tar_bytes, mtime=0)
    return Blob(zipped, OCI_LAYER, "sha256:" + hashlib.sha256(tar_bytes).hexdigest())


@dataclass
class Image:
    """One platform's image: a config and its layers."""

    layers: list[Blob]
    architecture: str = "amd64"
    label: str = ""
    config: Blob = field(init=False)
    manifest: Blob = field(init=False)

    def __post_init__(self) -> None:
        config = {
            "architecture": self.architecture,
            "os": "linux",
            "config": {"Labels": {"test": self.label}},
            "rootfs": {"type": "layers", "diff_ids": [b.diff_id for b in self.layers]},
        }
        self.config = Blob(json.dumps(config, sort_keys=True).encode(), OCI_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": self.config.descriptor(),
            "layers": [b.descriptor() for b in self.layers],
        }
        self.manifest = Blob(json.dumps(manifest, sort_keys=True).encode(), OCI_MANIFEST)

    @property
    def blobs(self) -> list[Blob]:
        return [self.config, *self.layers, self.manifest]


@dataclass
class Index:
    """A multi-platform image: an index of images."""

    images: list[Image]
    manifest: Blob = field(init=False)

    def __post_init__(self) -> None:
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                im.manifest.descriptor(platform={"architecture": im.architecture, "os": "linux"})
                for im in self.images
            ],
        }
        self.manifest = Blob(json.dumps(index, sort_keys=True).encode(), OCI_INDEX)

    @property
    def blobs(self) -> list[Blob]:
        return [b for im in self.images for b in im.blobs] + [self.manifest]


def write_layout(directory: Path, top: Image | Index, tag: str = "latest") -> Path:
    """Write ``top`` as an OCI layout that ``skopeo copy oci:DIR:TAG`` reads."""
    blobs_dir = directory / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True, exist_ok=True)
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    for blob in top.blobs:
        (blobs_dir / blob.digest.removeprefix("sha256:")).write_bytes(blob.data)
    index = {
        "schemaVersion": 2,
        "manifests": [
            top.manifest.descriptor(annotations={"org.opencontainers.image.ref.name": tag})
        ],
    }
    (directory / "index.json").write_text(json.dumps(index))
    return directory
