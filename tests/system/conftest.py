"""Every end-to-end scenario runs against each registry: Debian's 2.8.2 and a 3.x binary."""

from __future__ import annotations

import pytest

from tests.support.registry import REGISTRY_BINARIES, registry_binary
from worker.cli.demo.registry import RegistryBinary


@pytest.fixture(scope="module", params=REGISTRY_BINARIES)
def binary(request: pytest.FixtureRequest) -> RegistryBinary:
    """The registry under test (the 3.x one skips, or fails under WARMER_REQUIRE_E2E=1, when
    its path is not given)."""
    return registry_binary(request.param)
