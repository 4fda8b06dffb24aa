"""What the warmer knows about one blob: the Python side of distribution's ``Descriptor``."""

from __future__ import annotations

from typing import Final, NamedTuple

__all__ = ["DEFAULT_MEDIA_TYPE", "Descriptor"]

#: The media type a filesystem-backed registry gives every blob it stats (config blobs and
#: manifests included): the registry's own cache fill holds nothing else.
DEFAULT_MEDIA_TYPE: Final = "application/octet-stream"


class Descriptor(NamedTuple):
    """A blob's digest and size, its media type, and (when known) its storage driver path.

    A NamedTuple, not a frozen dataclass: a walk makes one per link, and a tuple is built in C.
    """

    digest: str
    size: int
    media_type: str = DEFAULT_MEDIA_TYPE
    #: The driver's path of the blob data (``/docker/registry/v2/blobs/...``), needed by the
    #: 2.0 ``layerinfo`` schema; ``None`` when the cache that answered does not keep it.
    path: str | None = None
