"""Is an image warm? ``warmer check`` and the receiver's ``GET /check``: read-only, nothing is
written to the cache.

An image (every platform of an index, or one) is warm when the cache answers every lookup a
first pull of it makes, as the store would: each manifest, config and layer is

    warm      in the cache as a pull reads it (membership and descriptor), with the store's
              size and media type (:func:`~worker.core.audit.differs`)
    cold      not in the cache: the pull would go to the store
    stale     in the cache, but the store holds other fields, or no longer holds it: the
              registry would answer from the cache what the store does not say
    missing   neither in the cache nor in the store: no warm can help (the image is broken)

Manifests are looked up as the configured registry caches them: members of their repository
(3.x), or global descriptors only (2.x). Layers the registry took without holding them (foreign
ones, any with ``urls``) that neither holds are left out, as a pull fetches them elsewhere.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from worker.cache import BlobDescriptorCache
from worker.core.audit import differs
from worker.core.images import Image, resolve
from worker.errors import BlobNotFoundError, StateError, StoreError
from worker.registry.descriptor import Descriptor
from worker.registry.reference import ImageReference
from worker.state import StateStore
from worker.storage import Store

__all__ = [
    "BlobState",
    "ImageCheck",
    "PlatformCheck",
    "check_image",
    "check_report",
    "record_checks",
]

_log = logging.getLogger(__name__)
#: An image's verdict is its worst blob's state, in this order (see worker.state.slo.VERDICTS).
_WORST_FIRST = ("stale", "missing", "cold")


class BlobState(StrEnum):
    """What the cache says of one blob of an image, against the store."""

    WARM = "warm"
    COLD = "cold"
    STALE = "stale"
    MISSING = "missing"


@dataclass(slots=True)
class PlatformCheck:
    """One platform of an image: the state of each manifest, config and layer a pull reads."""

    platform: str
    manifest: str
    states: dict[str, BlobState] = field(default_factory=dict)

    def count(self, state: BlobState) -> int:
        """How many of its blobs are in ``state``."""
        return sum(s is state for s in self.states.values())

    @property
    def warm(self) -> bool:
        """True when every blob is warm."""
        return all(s is BlobState.WARM for s in self.states.values())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the counts, and the blobs that are not warm with their state."""
        return {
            "platform": self.platform,
            "manifest": self.manifest,
            "blobs": len(self.states),
            **{state.value: self.count(state) for state in BlobState},
            "not_warm": {d: s.value for d, s in self.states.items() if s is not BlobState.WARM},
        }


@dataclass(slots=True)
class ImageCheck:
    """An image reference checked: what it resolved to, a row a platform."""

    image: Image
    platforms: list[PlatformCheck]

    @property
    def warm(self) -> bool:
        """True when every blob of every platform checked is warm."""
        return all(p.warm for p in self.platforms)

    @property
    def verdict(self) -> str:
        """The image's worst blob state: ``stale``, ``missing``, ``cold``, or ``warm``."""
        found = {s.value for p in self.platforms for s in p.states.values()}
        return next((state for state in _WORST_FIRST if state in found), BlobState.WARM.value)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``warm`` (true or false), the reference, and a row a platform."""
        return {
            "reference": self.image.reference.text,
            "repository": self.image.reference.repository,
            "digest": self.image.digest,
            "warm": self.warm,
            "platforms": [p.as_dict() for p in self.platforms],
        }


def check_image(
    cache: BlobDescriptorCache,
    store: Store,
    reference: ImageReference,
    platform: str | None = None,
) -> ImageCheck:
    """Check the image ``reference`` names (every platform, or ``platform``'s) against the
    store. Raise what the store or cache raise when either cannot answer (StoreError,
    CacheError), and ImageNotFoundError or BlobNotFoundError when there is no such image."""
    image = resolve(store, reference, platform)
    repository = reference.repository
    blobs = list(dict.fromkeys(b for part in image.parts for b in part.image.blobs))
    manifests = list(dict.fromkeys(m for part in image.parts for m in part.manifests))
    external = frozenset(b for part in image.parts for b in part.image.external).difference(
        b for part in image.parts for b in part.image.required
    )
    states = _states(
        blobs, store.fetch_cached(repository, blobs), cache.stat_many(blobs, repository)
    )
    # 3.x caches a served manifest in its repository, as a blob; 2.x its global descriptor.
    scope = repository if cache.version.manifests_are_members else None
    answers = store.fetch_cached(scope, manifests, manifests=scope is not None)
    states |= _states(manifests, answers, cache.stat_many(manifests, scope))
    rows = []
    for part in image.parts:
        row = PlatformCheck(part.platform, part.digest)
        for digest in (*part.manifests, *part.image.blobs):
            if digest in external and states[digest] is BlobState.MISSING:
                continue  # fetched from its urls, never from this registry
            row.states[digest] = states[digest]
        rows.append(row)
    return ImageCheck(image, rows)


def check_report(
    checks: Sequence[ImageCheck],
    errors: Sequence[tuple[str, str]] = (),
    skipped: int = 0,
) -> dict[str, Any]:
    """What ``warmer check --json`` prints and ``GET /check`` answers: ``warm`` (true when
    every image was checked and is warm), an entry an image, the references that could not
    be checked (``errors``: reference and reason), and how many were skipped (another
    registry's, in a file)."""
    return {
        "warm": bool(checks) and not errors and all(c.warm for c in checks),
        "images": [c.as_dict() for c in checks],
        "errors": [{"reference": ref, "error": reason} for ref, reason in errors],
        "skipped": skipped,
    }


def record_checks(state: StateStore, checks: Sequence[ImageCheck]) -> None:
    """Count the images checked, by verdict, in the cluster's figures (``/metrics``). A check's
    answer never waits on the state Redis: when it is away, the count is lost and logged."""
    try:
        state.slo.count_images(Counter(c.verdict for c in checks))
    except StateError as exc:
        _log.warning("images checked not counted: %s", exc)


def _states(
    digests: Sequence[str],
    answers: Sequence[Descriptor | StoreError],
    cached: Sequence[Descriptor | None],
) -> dict[str, BlobState]:
    states: dict[str, BlobState] = {}
    for digest, answer, entry in zip(digests, answers, cached, strict=True):
        if isinstance(answer, BlobNotFoundError):
            states[digest] = BlobState.MISSING if entry is None else BlobState.STALE
        elif isinstance(answer, StoreError):
            raise answer  # not answered: nothing can be said of this image
        elif entry is None:
            states[digest] = BlobState.COLD
        else:
            states[digest] = BlobState.STALE if differs(entry, answer) else BlobState.WARM
    return states
