"""The registry generations whose caches the warmer fills: :class:`RegistryVersion`.

A setting (``WARMER_REGISTRY_VERSION``) and a fact about the registry at once, so it sits below
both the settings and the cache, which each read it.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["RegistryVersion"]


class RegistryVersion(StrEnum):
    """Which registry generation's cache the warmer fills (``WARMER_REGISTRY_VERSION``).

    Each generation writes its own set of keys and fields: the warmer writes exactly what the
    registry it serves writes by itself when every image is pulled.
    """

    #: Registry 3.x (``registry:3``): blobdescriptor, and manifests are members of their
    #: repository with a repository media type, as blobs are.
    V3 = "3"
    #: Registry 2.1 to 2.8 (``registry:2``): blobdescriptor; manifests get the global hash only.
    V2 = "2"
    #: Registry 2.0: the original ``layerinfo`` cache (path and length).
    V2_0 = "2.0"
    #: 2.0 and 2.x registries on one Redis: both field sets in the same hashes.
    V2_0_AND_V2 = "2.0+2"

    @property
    def has_descriptor(self) -> bool:
        """True when the 2.1+ fields (digest, size, mediatype) are written."""
        return self is not RegistryVersion.V2_0

    @property
    def has_layerinfo(self) -> bool:
        """True when the 2.0 fields (path, length) are written."""
        return self in (RegistryVersion.V2_0, RegistryVersion.V2_0_AND_V2)

    @property
    def manifests_are_members(self) -> bool:
        """True when a repository's manifests are members of it, as its blobs are (3.x)."""
        return self is RegistryVersion.V3

    @property
    def collects_links(self) -> bool:
        """Its ``garbage-collect`` deletes the layer links of the blobs it sweeps (measured on
        3.1.1); 2.x leaves them, linking blobs whose data is gone."""
        return self is RegistryVersion.V3

    @classmethod
    def parse(cls, value: object) -> RegistryVersion:
        """What ``registry --version`` prints (``v3.1.1``, ``2.8.2``) or a member's value."""
        if isinstance(value, cls):
            return value
        text = str(value).strip().lower().removeprefix("v")
        if text in {m.value for m in cls}:
            return cls(text)
        major, _, rest = text.partition(".")
        minor = rest.partition(".")[0]
        if major == "3":
            return cls.V3
        if major == "2" and minor == "0":
            return cls.V2_0
        if major == "2" and minor.isdigit():
            return cls.V2
        raise ValueError(
            f"unknown registry version {value!r}: give 3, 2, 2.0, 2.0+2, or what "
            "`registry --version` prints"
        )
