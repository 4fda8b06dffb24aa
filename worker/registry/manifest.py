"""Manifests the registry serves, parsed into the digests they reference.

Five media types matter: the OCI image manifest and index, Docker's schema 2 manifest and manifest
list, and Docker's signed schema 1. An image manifest references a config blob and layers; an index
or a manifest list references child manifests. Every digest is validated before it is returned.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

from worker.errors import InvalidDigestError, InvalidManifestError, InvalidReferenceError
from worker.registry import reference
from worker.registry.mediatypes import (
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    IMAGE_TYPES,
    INDEX_TYPES,
    NON_DISTRIBUTABLE_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    SCHEMA1_TYPES,
)

__all__ = ["MAX_MANIFEST_BYTES", "Manifest", "parse_manifest", "platform", "platform_matches"]

#: distribution refuses manifests over 4 MiB; so do we, before parsing.
MAX_MANIFEST_BYTES: Final = 4 * 1024 * 1024
_PLATFORM_RE: Final = re.compile(r"[a-z0-9_.-]{1,32}/[a-z0-9_.-]{1,32}(?:/[a-z0-9_.-]{1,32})?")


@dataclass(frozen=True, slots=True)
class Manifest:
    """The references of one manifest: config and layers of an image, or children of an index."""

    media_type: str
    config: str | None = None
    layers: tuple[str, ...] = ()
    manifests: tuple[str, ...] = ()
    #: The platform of each of ``manifests`` as ``os/arch[/variant]`` (the index's
    #: ``platform``), ``""`` where the index names none.
    platforms: tuple[str, ...] = ()
    #: Those of ``layers`` (or the config) the registry accepted without requiring them in the
    #: repository: foreign or non-distributable layers, and any with ``urls``. A client may
    #: fetch them elsewhere; the registry holds them only if they were pushed too.
    external: frozenset[str] = frozenset()

    @property
    def blobs(self) -> tuple[str, ...]:
        """Config then layers, without repeats: what a pull of this image fetches as blobs."""
        seen = dict.fromkeys(((self.config,) if self.config else ()) + self.layers)
        return tuple(seen)

    @property
    def required(self) -> tuple[str, ...]:
        """The blobs the registry made sure the repository holds when it took the manifest."""
        return tuple(b for b in self.blobs if b not in self.external)

    @property
    def is_index(self) -> bool:
        """True for an OCI index or a Docker manifest list."""
        return self.media_type in INDEX_TYPES


def parse_manifest(payload: bytes) -> Manifest:
    """Parse a manifest's bytes; raise InvalidManifestError when it is none of the known types."""
    if len(payload) > MAX_MANIFEST_BYTES:
        raise InvalidManifestError(f"manifest is {len(payload)} bytes, over {MAX_MANIFEST_BYTES}")
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidManifestError(f"manifest is not JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:
        # JSON the registry accepts and Python refuses: an integer over Python's digit limit,
        # or nesting deeper than the parser's recursion limit (in a field we never read).
        raise InvalidManifestError(f"manifest cannot be read here: {exc!r}"[:300]) from None
    if not isinstance(doc, dict):
        raise InvalidManifestError("manifest is not a JSON object")
    try:
        return _parse(doc)
    except InvalidDigestError as exc:
        raise InvalidManifestError(f"manifest references {exc}") from None
    except (KeyError, TypeError, AttributeError) as exc:
        raise InvalidManifestError(f"manifest is malformed: missing or wrong {exc}") from None


def _parse(doc: dict[str, Any]) -> Manifest:
    media_type = doc.get("mediaType")
    if doc.get("schemaVersion") == 1 or media_type in SCHEMA1_TYPES:
        # Schema 1 lists layers newest first, with repeats; keep the first place of each.
        layers = dict.fromkeys(reference.digest(layer["blobSum"]) for layer in doc["fsLayers"])
        kind = DOCKER_SCHEMA1_SIGNED if "signatures" in doc else DOCKER_SCHEMA1
        return Manifest(media_type=kind, layers=tuple(layers))
    # OCI makes mediaType optional: tell an index from an image by its fields then.
    if media_type in INDEX_TYPES or (media_type is None and "manifests" in doc):
        children = tuple(reference.digest(child["digest"]) for child in doc["manifests"])
        platforms = tuple(_platform_of(child) for child in doc["manifests"])
        return Manifest(media_type=media_type or OCI_INDEX, manifests=children, platforms=platforms)
    if media_type in IMAGE_TYPES or (media_type is None and "config" in doc):
        descriptors: list[Any] = [doc["config"], *(doc.get("layers") or ())]
        digests = [reference.digest(d["digest"]) for d in descriptors]
        return Manifest(
            media_type=media_type or OCI_MANIFEST,
            config=digests[0],
            layers=tuple(digests[1:]),
            external=frozenset(
                digest for digest, d in zip(digests, descriptors, strict=True) if _external(d)
            ),
        )
    raise InvalidManifestError(f"unknown manifest media type {media_type!r}")


def _platform_of(child: dict[str, Any]) -> str:
    # os/arch[/variant] of an index's child; "" when it names none, or not as strings.
    described = child.get("platform")
    if not isinstance(described, dict):
        return ""
    parts = [described.get("os"), described.get("architecture")]
    if described.get("variant"):
        parts.append(described["variant"])
    if not all(isinstance(p, str) and p for p in parts):
        return ""
    return "/".join(str(p) for p in parts)


def platform(value: str) -> str:
    """Return ``value`` if it names a platform, ``os/arch[/variant]`` (``linux/amd64``,
    ``linux/arm64/v8``), else raise InvalidReferenceError."""
    if _PLATFORM_RE.fullmatch(value) is None:
        raise InvalidReferenceError(
            f"invalid platform {value!r}: expected os/arch or os/arch/variant (linux/amd64)"
        )
    return value


def platform_matches(wanted: str, offered: str) -> bool:
    """True when an index's child of platform ``offered`` is one of ``wanted``: the same os and
    architecture, and the same variant when ``wanted`` names one."""
    want, have = wanted.split("/"), offered.split("/")
    return want == have[: len(want)] if len(want) == 3 else want == have[:2]


def _external(descriptor: dict[str, Any]) -> bool:
    # distribution's manifest handlers skip the presence check for these (2.8: Docker foreign
    # layers; OCI layers with urls, non-distributable ones; 3.x: any descriptor with urls).
    # The union: the warmer must not wait for a blob that any of them let be absent.
    return descriptor.get("mediaType") in NON_DISTRIBUTABLE_TYPES or bool(descriptor.get("urls"))
