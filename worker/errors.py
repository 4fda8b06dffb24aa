"""Every error the warmer raises on purpose: one hierarchy, rooted at :class:`WarmerError`.

Callers catch the narrowest class they can act on; the CLI catches :class:`WarmerError` and prints
its message as one line.
"""

from __future__ import annotations

__all__ = [
    "BlobNotFoundError",
    "CacheError",
    "CacheMissError",
    "ConfigError",
    "EvictingRedisError",
    "InvalidDigestError",
    "InvalidEnvelopeError",
    "InvalidManifestError",
    "InvalidReferenceError",
    "InvalidRepositoryNameError",
    "RepositoryNotFoundError",
    "StateError",
    "StoreError",
    "StoreUnavailableError",
    "WarmerError",
]


class WarmerError(Exception):
    """Base class of every error the warmer raises on purpose."""


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


class InvalidEnvelopeError(WarmerError):
    """Raised when a notification body is not JSON or not an envelope (``{"events": [...]}``)."""


class CacheError(WarmerError):
    """Raised when the cache's Redis cannot be reached or answers with an error."""


class StateError(WarmerError):
    """Raised when the warmer's own Redis (``WARMER_STATE_URL``) cannot be reached."""


class CacheMissError(WarmerError):
    """Raised when the cache holds no complete descriptor for a digest (in that repository).

    The one miss error of the cache, like distribution's ``ErrBlobUnknown`` from a cache: it is
    a normal answer, never logged as a failure.
    """


class StoreError(WarmerError):
    """Raised when the registry's storage cannot answer."""


class StoreUnavailableError(StoreError):
    """Raised when the storage root does not exist or is not a registry's ``rootdirectory``."""


class BlobNotFoundError(StoreError):
    """Raised when a blob is not in the store, or not linked into the repository asked about."""


class RepositoryNotFoundError(StoreError):
    """Raised when a repository named by the caller has no blobs or manifests in the store."""


class InvalidManifestError(StoreError):
    """Raised when a manifest cannot be parsed as one of the media types the registry serves."""
