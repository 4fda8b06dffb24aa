"""Manifests of every media type the registry serves, parsed into their references."""

from __future__ import annotations

import json

import pytest

from worker.errors import InvalidManifestError
from worker.registry.manifest import parse_manifest
from worker.registry.mediatypes import (
    DOCKER_FOREIGN_LAYER,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    DOCKER_SCHEMA2,
    OCI_INDEX,
    OCI_MANIFEST,
)

A, B, C = ("sha256:" + ch * 64 for ch in "abc")


def _dump(doc: object) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_SCHEMA2, None])
def test_image_manifest_gives_config_then_layers(media_type: str | None) -> None:
    doc = {"schemaVersion": 2, "config": {"digest": A}, "layers": [{"digest": B}, {"digest": C}]}
    if media_type:
        doc["mediaType"] = media_type
    m = parse_manifest(_dump(doc))
    assert m.media_type == (media_type or OCI_MANIFEST)
    assert (m.config, m.layers, m.manifests) == (A, (B, C), ())
    assert m.blobs == (A, B, C)
    assert not m.is_index


@pytest.mark.parametrize(
    ("media_type", "layer"),
    [
        (DOCKER_SCHEMA2, {"mediaType": DOCKER_FOREIGN_LAYER, "urls": ["https://x/l"]}),
        (DOCKER_SCHEMA2, {"mediaType": DOCKER_FOREIGN_LAYER}),
        (OCI_MANIFEST, {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar"}),
        (OCI_MANIFEST, {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "urls": ["u"]}),
    ],
)
def test_foreign_non_distributable_and_url_layers_are_external(
    media_type: str, layer: dict[str, object]
) -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"digest": A, "mediaType": "application/vnd.oci.image.config.v1+json"},
        "layers": [{**layer, "digest": B}, {"digest": C, "mediaType": "x", "urls": []}],
    }
    m = parse_manifest(_dump(doc))
    assert m.blobs == (A, B, C)
    assert m.external == {B}
    assert m.required == (A, C)


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_MANIFEST_LIST, None])
def test_index_gives_its_children(media_type: str | None) -> None:
    doc = {"schemaVersion": 2, "manifests": [{"digest": A}, {"digest": B}]}
    if media_type:
        doc["mediaType"] = media_type
    m = parse_manifest(_dump(doc))
    assert m.manifests == (A, B)
    assert m.blobs == ()
    assert m.is_index


def test_schema1_gives_layers_once_each_and_tells_signed_from_unsigned() -> None:
    doc = {"schemaVersion": 1, "fsLayers": [{"blobSum": A}, {"blobSum": B}, {"blobSum": A}]}
    m = parse_manifest(_dump(doc))
    assert (m.media_type, m.layers) == (DOCKER_SCHEMA1, (A, B))
    signed = parse_manifest(_dump({**doc, "signatures": [{}]}))
    assert signed.media_type == DOCKER_SCHEMA1_SIGNED


def test_an_image_without_layers_has_only_its_config() -> None:
    m = parse_manifest(_dump({"mediaType": OCI_MANIFEST, "config": {"digest": A}}))
    assert m.blobs == (A,)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (_dump({"mediaType": "application/x-unknown"}), "unknown manifest media type"),
        (_dump({"mediaType": OCI_MANIFEST, "config": {"digest": "sha256:../x"}}), "invalid digest"),
        (_dump({"mediaType": OCI_MANIFEST}), "malformed"),
        (_dump({"mediaType": OCI_INDEX, "manifests": [{"size": 1}]}), "malformed"),
        (b" " * (4 * 1024 * 1024 + 1), "over"),
    ],
)
def test_bad_manifests_are_refused_with_a_reason(payload: bytes, message: str) -> None:
    with pytest.raises(InvalidManifestError, match=message):
        parse_manifest(payload)
