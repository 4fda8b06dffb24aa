"""The DB numbers of the one redis-server the tests share, each named by what it holds.

Every test that puts something on the shared server takes its DB from here, never a number by
hand: two tests can then never meet in one DB by accident. The session's server has
``DB_COUNT`` DBs (tests/conftest.py starts it).
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["DB", "DB_COUNT", "shared_env"]


class DB:
    """One DB per purpose on the shared server (``redis_proc``): plain ints (redis-py's
    hiredis parser takes no int subclass), each number once (tests/unit/test_redisdbs.py)."""

    CACHE: Final = 0  # the registry cache of the unit tests (the cache_redis fixture)
    BROKER: Final = 1  # the broker of the CLI and task tests
    STATE: Final = 2  # the warmer's own state (the state_redis fixture)
    FLOWER_BROKER: Final = 3
    STATS_BROKER: Final = 4
    BEAT_BROKER: Final = 5
    REWARM_PUSH: Final = 6  # e2e: the registry that was pushed to
    REWARM_REFERENCE: Final = 7  # e2e: a registry that pulled everything, the reference
    REWARM_WARM: Final = 8  # e2e: what warmer rewarm filled
    EVENTS_ORIGIN: Final = 9  # e2e: the registry that notifies
    EVENTS_REPLICA: Final = 10  # e2e: the replica whose cache only the warmer fills
    EVENTS_REFERENCE: Final = 11
    EVENTS_STATE: Final = 12
    EVENTS_BROKER: Final = 13
    RECONCILE_CACHE: Final = 14
    UNUSUAL_ORIGIN: Final = 15  # e2e: Windows-style images and unusual names, pushed here
    UNUSUAL_REPLICA: Final = 16  # e2e: ... and pulled through a replica only the warmer fills
    UNUSUAL_STATE: Final = 17
    UNUSUAL_BROKER: Final = 18
    KINDS_PUSH: Final = 19  # e2e: the registry 3.x the corpus of the Redis-kinds tests went to
    KINDS_STATE: Final = 20
    KINDS_BROKER: Final = 21
    BACKLOG_BROKER: Final = 22  # the backlog test's queue: workers stopped for "two hours"
    HEAL_BROKER: Final = 23  # the self-healing tests' queues
    HEAL_RESTART_BROKER: Final = 24
    SHUTDOWN_BROKER: Final = 25  # the shutdown tests' queue: nothing another test left in it
    S3_PUSH: Final = 26  # e2e on S3: the registry pushed to
    S3_REFERENCE: Final = 27  # e2e on S3: the registry that pulled everything by itself
    S3_WARM: Final = 28  # e2e on S3: the replica only the warmer fills
    S3_EVENTS_ORIGIN: Final = 29  # e2e on S3: the registry that notifies
    S3_EVENTS_REPLICA: Final = 30  # e2e on S3: the replica the warmer fills from events
    S3_EVENTS_REFERENCE: Final = 31
    S3_EVENTS_STATE: Final = 32
    S3_EVENTS_BROKER: Final = 33
    S3_FANOUT_BROKER: Final = 34  # the fanned-out re-warm of an S3 store
    DELETE_WINS_CACHE: Final = 35  # e2e: deletes through a registry while the warmer writes
    DELETE_WINS_STATE: Final = 36
    DELETE_WINS_BROKER: Final = 37
    SNIPPET_CACHE: Final = 38  # e2e: a registry run on the config snippet warmer up prints
    IMAGES_BROKER: Final = 39  # warmer warm --enqueue and POST /warm: a task an image
    IMAGES_CACHE: Final = 40  # e2e: images checked and warmed by reference, registry's cache
    IMAGES_STATE: Final = 41
    IMAGES_PUSH: Final = 42  # e2e: the registry the images were pushed through
    HARBOR_BROKER: Final = 43  # Harbor's webhooks (POST /harbor) to a real worker
    HARBOR_CACHE: Final = 44  # e2e: a registry 2.8 set up as Harbor sets it up, its cache
    HARBOR_STATE: Final = 45
    SLO_BROKER: Final = 46  # push-to-warm through a receiver and a worker
    MONITORING_STATE: Final = 47  # the receiver a real Prometheus scrapes
    MONITORING_BROKER: Final = 48
    HEAL_GC_CACHE: Final = 49  # the heal after a garbage-collect and a flush, on a registry
    HEAL_GC_BROKER: Final = 50
    HEAL_GC_STATE: Final = 51


#: DBs of the shared server: every name of DB has one below it.
DB_COUNT = 52


def shared_env(
    proc: Any, *, broker: int = DB.BROKER, cache: int = DB.CACHE, state: int = DB.STATE
) -> dict[str, str]:
    """The warmer's Redis settings on the shared server, as environment variables.

    Cache, broker and state share one server here on purpose (one server per test would cost
    seconds each), which the start-up eviction check refuses: it is skipped, and has tests of
    its own (tests/integration/test_eviction.py).
    """
    base = f"redis://{proc.host}:{proc.port}"
    return {
        "WARMER_REDIS_URL": f"{base}/{cache}",
        "WARMER_BROKER_URL": f"{base}/{broker}",
        "WARMER_STATE_URL": f"{base}/{state}",
        "WARMER_SKIP_EVICTION_CHECK": "1",
    }
