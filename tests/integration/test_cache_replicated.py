"""Behind a Sentinel, a cache write counts once a replica has it, or while the Sentinels still
name its master (a replica merely away must not stop every warm)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import redis

from tests.support.redis_servers import redis_sentinel
from worker.cache import BlobDescriptorCache
from worker.config.connections import connect
from worker.registry.descriptor import Descriptor

D = "sha256:" + "a" * 64


def test_a_write_stands_while_the_only_replica_is_away(tmp_path: Path) -> None:
    with redis_sentinel(tmp_path / "sentinel") as sentinel:
        cache = BlobDescriptorCache(connect(sentinel.url(0), timeout=5))
        cache.set_descriptor(Descriptor(D, 1), "team/app")  # replica confirms
        replica = redis.Redis(port=sentinel.replica_port)
        with contextlib.suppress(redis.ConnectionError):  # it hangs up as it goes
            replica.shutdown(nosave=True)
        replica.close()
        other = "sha256:" + "b" * 64
        started = time.monotonic()
        cache.set_descriptor(Descriptor(other, 2), "team/app")  # raised CacheError before
        cache.clear(D, "team/app")
        assert time.monotonic() - started < 10
        master = redis.Redis(port=sentinel.master())
        assert master.sismember("repository::team/app::blobs", other)
        assert not master.sismember("repository::team/app::blobs", D)
        master.close()
