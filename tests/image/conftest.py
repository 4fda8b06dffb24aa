"""The image tier: tests/image/run (``make image-test``) builds the image with podman, then runs
these tests in a network namespace of their own. Collected by ``make test`` too, where each one
skips at once: there is no image to run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.image.podman import IMAGE, Podman

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IMAGE:
        return
    skip = pytest.mark.skip(
        reason="the image tier: make image-test builds the image, then runs these tests"
    )
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(skip)


@pytest.fixture
def podman() -> Iterator[Podman]:
    """The podman that built the image; every container a test starts is removed after it."""
    runner = Podman()
    try:
        yield runner
    finally:
        runner.remove_all()
