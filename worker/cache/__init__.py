"""The registry's Redis cache: :mod:`keys` spells every key, :class:`BlobDescriptorCache` reads
and writes them."""

from worker.cache.blobcache import BlobDescriptorCache

__all__ = ["BlobDescriptorCache"]
