"""The start-up check that queued work and the warmer's state can never be evicted.

The registry asks for ``maxmemory-policy allkeys-lru`` on its cache Redis, and the policy is
server-wide: a broker or state DB on that server (the defaults put all three on one) loses
queued tasks, the ledger and the dedup marks silently once memory fills. ``warmer worker``,
``warmer webhook`` and ``warmer up`` call :func:`check_never_evicts` before they start.

A Redis is known by its ``run_id`` (INFO server), so ``localhost`` and ``127.0.0.1``, or two
DB numbers, are one server; when one of the two does not answer, by its address. The policy of
a server that does not answer yet is not checked (it is logged): the warmer waits for it like
for any outage. RabbitMQ and Sentinel brokers are not Redis servers: not checked.
"""

from __future__ import annotations

import logging
from typing import Final, NamedTuple

import redis

from worker.config.connections import RedisTarget, connect, is_cluster, parse_redis_url
from worker.config.secretvalues import redact_url
from worker.config.settings import Settings
from worker.errors import ConfigError, EvictingRedisError

__all__ = ["OVERRIDE", "check_never_evicts", "eviction_problem"]

_log = logging.getLogger(__name__)

#: The setting that skips the check, for those who know their Redis never evicts.
OVERRIDE: Final = "WARMER_SKIP_EVICTION_CHECK"
_REDIS_SCHEMES: Final = ("redis://", "rediss://", "unix://")
_TIMEOUT: Final = 2.0


class _Server(NamedTuple):
    run_id: str
    policy: str


def check_never_evicts(settings: Settings) -> None:
    """Raise EvictingRedisError when the broker's or the state's Redis can evict keys."""
    if settings.skip_eviction_check:
        return
    problem = eviction_problem(settings)
    if problem is not None:
        raise EvictingRedisError(problem)


def eviction_problem(settings: Settings) -> str | None:
    """Why the broker's or the state's Redis can evict keys (what to do included), or None."""
    cache = _server(settings.redis_url, "cache")
    cache_address = _address(settings.redis_url)
    for role, variable, configured in (
        ("broker", "WARMER_BROKER_URL", settings.broker_url),
        ("state", "WARMER_STATE_URL", settings.state_url),
    ):
        url = configured.split(";")[0]  # kombu's failover list: the first is where it starts
        if not url.startswith(_REDIS_SCHEMES):
            continue
        server = _server(url, role)
        where = f"the {role} Redis ({variable}={redact_url(url)})"
        if cache is not None and server is not None:
            shared = server.run_id == cache.run_id
        else:  # one of them does not answer: the same address is the same server
            shared = _address(url) == cache_address
        if shared:
            return (
                f"{where} is the registry cache's Redis server (WARMER_REDIS_URL): the registry "
                "asks for maxmemory-policy allkeys-lru there, and the policy is server-wide, so "
                f"the {role}'s keys can be evicted silently. Give the broker and the state a "
                "redis-server of their own with maxmemory-policy noeviction (and appendonly "
                f"yes), or set {OVERRIDE}=1 if you know this server never evicts"
            )
        if server is not None and server.policy != "noeviction":
            return (
                f"{where} has maxmemory-policy {server.policy}: once its memory fills, queued "
                "tasks, the ledger and the dedup marks can be evicted silently. Set "
                "maxmemory-policy noeviction on it (CONFIG SET maxmemory-policy noeviction, "
                f"and in its redis.conf), or set {OVERRIDE}=1 if you know it never fills"
            )
    return None


def _target(url: str) -> RedisTarget:
    try:
        return parse_redis_url(url)
    except ValueError as exc:  # a port that is no number, a DB that is none...
        raise ConfigError(f"invalid Redis URL {redact_url(url)}: {exc}") from None


def _address(url: str) -> tuple[str, ...]:
    # Only when the cache does not answer: the same host and port (or socket) is one server.
    target = _target(url)
    if target.socket is not None:
        return ("unix", target.socket)
    host, port = target.hosts[0]
    host = "127.0.0.1" if host.lower() in ("localhost", "::1") else host.lower()
    return (host, str(port))


def _server(url: str, role: str) -> _Server | None:
    _target(url)
    client = connect(url, _TIMEOUT)
    if is_cluster(client):  # a Cluster holds the cache only: no broker or state shares it
        client.close()
        return None
    try:
        server = client.info("server")
        memory = client.info("memory")
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        _log.warning("%s Redis does not answer, not checked for eviction: %s", role, exc)
        return None
    except redis.RedisError as exc:
        raise EvictingRedisError(
            f"cannot read the {role} Redis' eviction policy ({redact_url(url)}): {exc}; "
            f"set {OVERRIDE}=1 if you know it never evicts"
        ) from None
    finally:
        client.close()
    return _Server(str(server.get("run_id", "")), str(memory.get("maxmemory_policy", "")))
