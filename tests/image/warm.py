"""What the image tier pushes and how it sees the push warmed: a small image (two layers), and
the warmer's own word that its events are done with the cache holding every blob."""

from __future__ import annotations

from pathlib import Path

import redis

from worker.cache import BlobDescriptorCache
from worker.cli.demo.oci import Image, layer, write_layout
from worker.cli.processes import wait_until
from worker.errors import CacheMissError
from worker.registry.versions import RegistryVersion
from worker.state import StateStore

__all__ = ["REPOSITORY", "TAG", "pushed_image", "wait_warm"]

REPOSITORY = "image-test/app"
TAG = f"{REPOSITORY}:v1"


def pushed_image(workdir: Path) -> tuple[Image, Path]:
    """The image, and its OCI layout for ``Registry.push``."""
    image = Image(
        [layer("hello.txt", b"hello from the image test\n"), layer("big.bin", bytes(256) * 64)],
        label="image-test",
    )
    return image, write_layout(workdir / "layout", image)


def wait_warm(
    image: Image, cache: redis.Redis, state: redis.Redis, version: RegistryVersion, timeout: float
) -> None:
    """Until the cache holds the image's manifest and every blob in the repository, and the
    warmer's state has no event pending."""
    blobs = BlobDescriptorCache(cache, version)
    store = StateStore(state)

    def warm() -> bool:
        try:
            for blob in (image.config, *image.layers):
                blobs.stat(blob.digest, REPOSITORY)
            blobs.stat(image.manifest.digest)
        except CacheMissError:
            return False
        return store.pending_count() == 0

    wait_until(warm, timeout=timeout, what="the pushed image warm in the cache", interval=0.5)
