"""Every error the warmer raises on purpose: one hierarchy, rooted at :class:`WarmerError`.

Callers catch the narrowest class they can act on; the CLI catches :class:`WarmerError` and prints
its message as one line.

Whether another try can help is part of the type, and only there: :attr:`WarmerError.retryable`.
Redis, broker and storage I/O can come back; a blob or repository that is not there, or a
manifest that does not parse, will not (those are dead-lettered at once, never retried). A caller
holding an error asks it (``exc.retryable``); what matches errors by class (Celery's
``autoretry_for`` and ``dont_autoretry_for``) takes :data:`RETRYABLE_ERRORS` and
:data:`PERMANENT_ERRORS`, both read off the classes below.
"""

from __future__ import annotations

from typing import ClassVar, Final

__all__ = [
    "PERMANENT_ERRORS",
    "RETRYABLE_ERRORS",
    "BlobNotFoundError",
    "CacheError",
    "CacheMissError",
    "ConfigError",
    "EvictingRedisError",
    "ForeignRegistryError",
    "ImageNotFoundError",
    "InvalidDigestError",
    "InvalidEnvelopeError",
    "InvalidManifestError",
    "InvalidReferenceError",
    "InvalidRepositoryNameError",
    "ManifestNotReadyError",
    "RecheckError",
    "RepositoryNotFoundError",
    "StateError",
    "StoreError",
    "StoreUnavailableError",
    "TagNotFoundError",
    "UnreadableEnvelopeError",
    "WarmerError",
]


class WarmerError(Exception):
    """Base class of every error the warmer raises on purpose; not retried unless its class
    says so."""

    #: True when the same call may succeed later (I/O); False when it never will. A subclass
    #: inherits its base's answer unless it gives its own.
    retryable: ClassVar[bool] = False


class ConfigError(WarmerError):
    """Raised when a setting is missing or malformed; the message names the variable."""


class EvictingRedisError(ConfigError):
    """Raised at start when the broker's or the state's Redis can evict keys: it is the cache's
    server, or its ``maxmemory-policy`` is not ``noeviction``. No retry helps: fix the setup."""


class InvalidReferenceError(WarmerError, ValueError):
    """Raised when a repository name or a digest does not follow distribution's grammar."""


class InvalidRepositoryNameError(InvalidReferenceError):
    """Raised when a repository name is not ``component(/component)*`` of at most 255 characters."""


class InvalidDigestError(InvalidReferenceError):
    """Raised when a digest is not ``sha256:<64 hex>`` or ``sha512:<128 hex>`` in lowercase."""


class ForeignRegistryError(InvalidReferenceError):
    """Raised when an image reference names a registry host other than this registry's
    (``WARMER_REGISTRY_HOSTS``)."""


class InvalidEnvelopeError(WarmerError):
    """Raised when a notification body is not JSON or not an envelope (``{"events": [...]}``)."""


class UnreadableEnvelopeError(InvalidEnvelopeError):
    """Raised when a body is JSON nested too deeply for the parser: it is dead-lettered whole,
    never refused (the registry would resend it forever)."""


class CacheError(WarmerError):
    """Raised when the cache's Redis cannot be reached or answers with an error."""

    retryable = True


class StateError(WarmerError):
    """Raised when the warmer's own Redis (``WARMER_STATE_URL``) cannot be reached."""

    retryable = True


class CacheMissError(WarmerError):
    """Raised when the cache holds no complete descriptor for a digest (in that repository).

    The one miss error of the cache, like distribution's ``ErrBlobUnknown`` from a cache: it is
    a normal answer, never logged as a failure.
    """


class StoreError(WarmerError):
    """Raised when the registry's storage cannot answer."""

    retryable = True


class RecheckError(StoreError):
    """Raised when the store left the re-check after a cache write unanswered for some of the
    write's repositories (:attr:`failed`): their entries were undone. What the others' re-checks
    found deleted (and forgot) is in :attr:`gone`. Another try can answer."""

    def __init__(
        self, message: str, failed: frozenset[str], gone: dict[str, set[str]] | None = None
    ) -> None:
        super().__init__(message)
        self.failed = failed
        self.gone = gone or {}


class StoreUnavailableError(StoreError):
    """Raised when the storage root does not exist or is not a registry's ``rootdirectory``."""


class BlobNotFoundError(StoreError):
    """Raised when a blob is not in the store, or not linked into the repository asked about."""

    retryable = False


class ImageNotFoundError(StoreError):
    """Raised when the store holds no image by a reference: no such tag, or no such platform."""

    retryable = False


class TagNotFoundError(ImageNotFoundError):
    """Raised when a repository has no such tag (no ``current/link`` of it in the store)."""


class ManifestNotReadyError(StoreError):
    """Raised when a pushed manifest is not readable yet: the registry can notify before its
    storage shows the revision, so a later try can help."""


class RepositoryNotFoundError(StoreError):
    """Raised when a repository named by the caller has no blobs or manifests in the store."""

    retryable = False


class InvalidManifestError(StoreError):
    """Raised when a manifest cannot be parsed as one of the media types the registry serves."""

    retryable = False


def _hierarchy() -> list[type[WarmerError]]:
    # Every class of the hierarchy: all are defined above, in this one module.
    classes: list[type[WarmerError]] = [WarmerError]
    for cls in classes:  # grows as it is read: breadth first
        classes.extend(c for c in cls.__subclasses__() if c not in classes)
    return classes


#: Every class whose errors a retry can help.
RETRYABLE_ERRORS: Final = tuple(c for c in _hierarchy() if c.retryable)
#: Every class whose errors no retry changes, but the bases of retryable ones (WarmerError): with
#: the tuple above, an error matches as its own ``retryable`` says (:func:`_check_matching`).
PERMANENT_ERRORS: Final = tuple(
    c
    for c in _hierarchy()
    if not c.retryable and not any(issubclass(r, c) for r in RETRYABLE_ERRORS)
)


def _check_matching() -> None:
    # Matching by class answers as the attribute does, unless a retryable class sits under a
    # permanent one that sits under a retryable one: refused here, at import.
    for cls in _hierarchy():
        matched = issubclass(cls, RETRYABLE_ERRORS) and not issubclass(cls, PERMANENT_ERRORS)
        if cls.retryable != matched:
            raise TypeError(f"{cls.__name__}.retryable is {cls.retryable}, its bases say otherwise")


_check_matching()
