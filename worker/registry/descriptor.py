"""What the warmer knows about one blob: the Python side of distribution's ``Descriptor``."""

from __future__ import annotations

from typing import NamedTuple

from worker.registry.mediatypes import OCTET_STREAM

__all__ = ["Descriptor"]


class Descriptor(NamedTuple):
    """A blob's digest and size, its media type, and (when known) its storage driver path.

    A NamedTuple, not a frozen dataclass: a walk makes one per link, and a tuple is built in C.
    """

    digest: str
    size: int
    media_type: str = OCTET_STREAM
    #: The driver's path of the blob data (``/docker/registry/v2/blobs/...``), needed by the
    #: 2.0 ``layerinfo`` schema; ``None`` when the cache that answered does not keep it.
    path: str | None = None
