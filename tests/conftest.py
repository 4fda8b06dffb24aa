"""Fixtures: a real redis-server started by the session on a free port, clean DBs, a store.

No Redis of the user's is touched: pytest-redis starts its own server and stops it at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from pytest_redis import factories

from bench.layout import LayoutWriter
from bench.s3_endpoint import moto_server
from tests.support.redisdbs import DB, DB_COUNT
from tests.support.registry import REGISTRY_BINARIES, registry_binary, tools_missing
from worker.cache import BlobDescriptorCache
from worker.cli.demo.registry import RegistryBinary
from worker.core.blobservice import CachedBlobService
from worker.registry.versions import RegistryVersion
from worker.state import StateStore
from worker.storage.filesystem import FilesystemStore

# Two servers on free ports: one the tests share (its DBs named in tests/support/redisdbs.py),
# and one that tests stop to see the warmer survive an outage.
redis_proc = factories.redis_proc(db_count=DB_COUNT)
outage_redis_proc = factories.redis_proc()

#: The caller's variables that would reach the warmer (in this process or any it starts): its
#: own, Sentry's, AWS's (credentials, endpoint, CA bundle) and the registry's overrides.
CALLER_PREFIXES = ("WARMER_", "SENTRY_", "AWS_", "REGISTRY_")
#: ... but for the suite's own switches, which no warmer reads: CI's "skips are failures", and
#: where the registry 3.x binary is (tests/support/registry.py).
KEPT = ("WARMER_REQUIRE_E2E", "WARMER_TEST_REGISTRY_V3")


@pytest.fixture(autouse=True, scope="session")
def _hermetic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The suite ignores the caller's environment and ``.env``: settings are read from the
    environment and a ``.env`` in the working directory, by this process and every warmer,
    celery or registry process a test starts. So the session drops the caller's ``WARMER_*``,
    ``SENTRY_*``, ``AWS_*`` and ``REGISTRY_*`` variables and works in an empty directory; tests
    give what they need."""
    home = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(CALLER_PREFIXES) and name not in KEPT:
                patch.delenv(name)
        patch.chdir(home)
        yield home


def _flushed(proc: Any, db: int) -> Iterator[redis.Redis]:
    client = redis.Redis(host=proc.host, port=proc.port, db=db)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def cache_redis(redis_proc: Any) -> Iterator[redis.Redis]:
    """A client of the registry cache DB, empty before and after each test."""
    yield from _flushed(redis_proc, DB.CACHE)


@pytest.fixture
def state_redis(redis_proc: Any) -> Iterator[redis.Redis]:
    """A client of the warmer's own state DB, empty before and after each test."""
    yield from _flushed(redis_proc, DB.STATE)


@pytest.fixture
def state(state_redis: redis.Redis) -> StateStore:
    return StateStore(state_redis)


@pytest.fixture(params=list(RegistryVersion), ids=[f"v{s.value}" for s in RegistryVersion])
def version(request: pytest.FixtureRequest) -> RegistryVersion:
    """Each registry version in turn: the cache contract holds for every generation."""
    value: RegistryVersion = request.param
    return value


@pytest.fixture
def cache(cache_redis: redis.Redis, version: RegistryVersion) -> BlobDescriptorCache:
    return BlobDescriptorCache(cache_redis, version)


@pytest.fixture
def layout(tmp_path: Path) -> LayoutWriter:
    """Writes blobs and links into a fresh storage root."""
    return LayoutWriter(tmp_path / "root")


@pytest.fixture
def store(layout: LayoutWriter) -> FilesystemStore:
    layout.store.root.mkdir(parents=True, exist_ok=True)
    return layout.store


@pytest.fixture
def service(cache_redis: redis.Redis, store: FilesystemStore) -> CachedBlobService:
    return CachedBlobService(BlobDescriptorCache(cache_redis), store)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server for the session (started on first use), on a free port of 127.0.0.1."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint


@pytest.fixture(scope="module", params=REGISTRY_BINARIES)
def binary(request: pytest.FixtureRequest) -> RegistryBinary:
    """Each registry in turn, Debian's 2.8.2 and a 3.x binary, for every scenario with a real
    registry (system and e2e tiers). The 3.x one skips, or fails under WARMER_REQUIRE_E2E=1,
    when its path is not given."""
    return registry_binary(request.param)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = tools_missing()
    if not missing:
        return
    reason = (
        f"end-to-end tests need {' and '.join(missing)} on PATH "
        "(apt-get install docker-registry skopeo)"
    )
    # By marker, not keyword: every test under tests/e2e/ has "e2e" among its keywords (its
    # package's name), and not all of them need a registry (test_up, most of test_deploy).
    wanted = [item for item in items if item.get_closest_marker("e2e")]
    if wanted and os.environ.get("WARMER_REQUIRE_E2E") == "1":
        raise pytest.UsageError(f"WARMER_REQUIRE_E2E=1 but {reason}")
    for item in wanted:
        item.add_marker(pytest.mark.skip(reason=reason))
