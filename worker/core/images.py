"""Images by reference: what a tag or digest names in the store, one part a platform, and the
warming of those parts, the same for a manifest push event (:mod:`worker.core.pipeline`) and
for ``warmer warm`` (and its task, and the receiver's ``POST /warm``).

A pull of an image reads its manifest (through an index or manifest list, the child of the
client's platform), then the config and layers. Warming an image writes what such pulls leave,
through :class:`~worker.core.writes.CacheWriter` (``warm_many``, ``fetch_manifests``): a
delete always wins here too.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from worker.core.blobservice import CachedBlobService
from worker.errors import BlobNotFoundError, ImageNotFoundError
from worker.registry import manifest
from worker.registry.manifest import Manifest, platform_matches
from worker.registry.reference import DEFAULT_TAG, ImageReference, image_reference
from worker.state.figures import Figures
from worker.storage import Store

__all__ = [
    "Image",
    "ImagePart",
    "WarmedImage",
    "follow",
    "resolve",
    "warm_image",
    "warm_parts",
    "warm_reference",
]


@dataclass(frozen=True, slots=True)
class ImagePart:
    """One platform of an image: the manifests a pull of it reads (the index, then the child;
    or the image alone) and the image manifest, whose config and layers it fetches."""

    #: ``os/arch[/variant]`` from the index; ``""`` for an image that is no index's child, or
    #: a child the index names no platform of.
    platform: str
    manifests: tuple[str, ...]
    image: Manifest

    @property
    def digest(self) -> str:
        """The image manifest's digest (the last manifest read)."""
        return self.manifests[-1]


@dataclass(frozen=True, slots=True)
class Image:
    """An image reference resolved in the store: the manifest it names, and its parts."""

    reference: ImageReference
    digest: str
    parts: tuple[ImagePart, ...]


def follow(
    read: Callable[[str], Manifest], digest: str, platform: str | None = None
) -> list[ImagePart]:
    """The parts of the manifest ``digest`` (``read`` gives a manifest of the repository): an
    image is one part; an index is a part a child (those of ``platform`` only, when given).
    Raise ImageNotFoundError when ``platform`` matches no child."""
    top = read(digest)
    if not top.is_index or (not top.manifests and platform is None):
        return [ImagePart("", (digest,), top)]
    offered = top.platforms or ("",) * len(top.manifests)
    chosen = [
        (child, where)
        for child, where in zip(top.manifests, offered, strict=True)
        if platform is None or platform_matches(platform, where)
    ]
    if not chosen:
        has = ", ".join(sorted({p for p in offered if p})) or "none named"
        raise ImageNotFoundError(f"{digest} has no platform {platform} (it has {has})")
    return [ImagePart(where, (digest, child), read(child)) for child, where in chosen]


def resolve(store: Store, reference: ImageReference, platform: str | None = None) -> Image:
    """The image ``reference`` names in ``store``: its tag resolved through the registry's tag
    link (``latest`` when it names neither tag nor digest), its index followed."""
    repository = reference.repository
    digest = reference.digest or store.resolve_tag(repository, reference.tag or DEFAULT_TAG)
    parts = follow(lambda d: store.manifest(repository, d), digest, platform)
    return Image(reference, digest, tuple(parts))


def warm_parts(
    service: CachedBlobService, repository: str, parts: Sequence[ImagePart], figures: Figures
) -> None:
    """Warm what pulls of ``parts`` leave: every config and layer (a cached fetch each), then
    each manifest as the registry caches a manifest it serves. Raise the first blob's error
    (a blob deleted meanwhile), after warming the rest of that batch."""
    images = [part.image for part in parts]
    manifests = list(dict.fromkeys(m for part in parts for m in part.manifests))
    blobs = list(dict.fromkeys(b for image in images for b in image.blobs))
    # Layers the registry took without holding them (foreign, non-distributable, with urls) are
    # warmed when the repository holds them after all, and skipped when not: a pull fetches
    # them from their urls. Every other blob is in the repository, or the warm fails.
    external = frozenset(b for image in images for b in image.external).difference(
        b for image in images for b in image.required
    )
    for outcome in service.warm_many(repository, blobs):
        if outcome.error is not None:
            if outcome.digest in external and isinstance(outcome.error, BlobNotFoundError):
                continue
            raise outcome.error
        figures.warmed += 1
    # What a pull leaves besides the blobs, for every manifest served.
    for outcome in service.fetch_manifests(repository, manifests, pushed=True):
        if outcome.error is not None:
            raise outcome.error
        figures.warmed += 1


@dataclass(slots=True)
class WarmedImage:
    """What warming one image did."""

    image: Image
    figures: Figures = field(default_factory=Figures)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the reference, what it resolved to, and the figures."""
        return {
            "reference": self.image.reference.text,
            "repository": self.image.reference.repository,
            "digest": self.image.digest,
            "platforms": [part.platform for part in self.image.parts],
            "warmed": self.figures.warmed,
            **self.figures.lookups(),
        }


def warm_image(
    service: CachedBlobService, reference: ImageReference, platform: str | None = None
) -> WarmedImage:
    """Warm the image ``reference`` names (every platform, or ``platform``'s) from the store."""
    image = resolve(service.store, reference, platform)
    warmed = WarmedImage(image)
    # Its lookups counted apart: this image's figures, whatever the service counted before.
    scoped = CachedBlobService(service.cache, service.store, warmed.figures, service.writer.journal)
    warm_parts(scoped, reference.repository, image.parts, warmed.figures)
    return warmed


def warm_reference(
    service: CachedBlobService, text: str, hosts: Collection[str], platform: str | None = None
) -> dict[str, Any]:
    """:func:`warm_image` of a reference as given (``warmer.warm_image``'s work): parsed, its
    host one of ``hosts``; what it did, JSON-ready."""
    reference = image_reference(text, hosts)
    chosen = manifest.platform(platform) if platform is not None else None
    return warm_image(service, reference, chosen).as_dict()
