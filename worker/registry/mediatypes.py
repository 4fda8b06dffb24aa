"""Every media type the warmer names: manifests, blobs and notification envelopes.

Defined once, here; the manifest parser, the event classifier, the receiver and the demo's
image builder all take them from this module.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "DOCKER_FOREIGN_LAYER",
    "DOCKER_MANIFEST_LIST",
    "DOCKER_SCHEMA1",
    "DOCKER_SCHEMA1_SIGNED",
    "DOCKER_SCHEMA2",
    "EVENTS_V1",
    "EVENTS_V2",
    "IMAGE_TYPES",
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "NON_DISTRIBUTABLE_TYPES",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_MANIFEST",
    "OCTET_STREAM",
    "SCHEMA1_TYPES",
]

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_LAYER: Final = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_SCHEMA2: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1: Final = "application/vnd.docker.distribution.manifest.v1+json"
#: A layer clients download from its ``urls`` (Windows base images), not from the registry.
DOCKER_FOREIGN_LAYER: Final = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1_SIGNED: Final = "application/vnd.docker.distribution.manifest.v1+prettyjws"

#: What a filesystem-backed registry gives every blob it stats (config blobs and manifests
#: included), and what its notifications say of a blob.
OCTET_STREAM: Final = "application/octet-stream"

#: Notification envelopes: registry 2.x, and 3.x.
EVENTS_V1: Final = "application/vnd.docker.distribution.events.v1+json"
EVENTS_V2: Final = "application/vnd.docker.distribution.events.v2+json"

INDEX_TYPES: Final = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_TYPES: Final = frozenset({OCI_MANIFEST, DOCKER_SCHEMA2})
SCHEMA1_TYPES: Final = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})
#: Every manifest media type the registry serves.
MANIFEST_TYPES: Final = INDEX_TYPES | IMAGE_TYPES | SCHEMA1_TYPES
#: Layers the registry lets a manifest reference without holding them (with ``urls``): Docker's
#: foreign layer and OCI's non-distributable ones (deprecated by OCI, still accepted).
NON_DISTRIBUTABLE_TYPES: Final = frozenset(
    {
        DOCKER_FOREIGN_LAYER,
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)
