"""Redis clients from the warmer's Redis URLs: one server, Sentinel, Cluster, TLS, ACL users.

A URL says everything a registry 3.x ``redis:`` section can say, in the shape redis-py and kombu
already use::

    redis://[USER:PASSWORD@]HOST[:PORT][/DB][?OPTIONS]       one server
    redis://[USER:PASSWORD@]H1:P1,H2:P2,H3:P3[?OPTIONS]      a Cluster (3.x: several addrs)
    redis://[USER:PASSWORD@]S1:P1,S2:P2[/DB]?master_name=M   the master M of these Sentinels
    rediss://...                                             the same over TLS
    unix:///PATH/TO/SOCKET[?db=DB]                           a local socket

Options: ``sentinel_username`` and ``sentinel_password`` (the Sentinels' own ACL user), and
redis-py's TLS options: ``ssl_ca_certs`` (CA file), ``ssl_certfile`` and ``ssl_keyfile`` (client
certificate), ``ssl_cert_reqs`` (``required``, the default, or ``none``). A URL is checked when
the settings are read (:func:`parse_redis_url`), so a bad one stops the process at start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

__all__ = [
    "RedisTarget",
    "connect",
    "is_cluster",
    "is_sentinel",
    "parse_redis_url",
    "sentinels_name_the_same_master",
]

_SCHEMES: Final = ("redis", "rediss", "unix")
_TLS_OPTIONS: Final = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
_OWN_OPTIONS: Final = ("master_name", "sentinel_username", "sentinel_password", "db")
_DEFAULT_PORT: Final = 6379
_ENCODE: Final = " (percent-encode / # ? @ in a user or password: %2F %23 %3F %40)"


@dataclass(frozen=True)
class RedisTarget:
    """What a Redis URL names: hosts, database, credentials, TLS, and how to reach the master."""

    hosts: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: bool = False
    tls: dict[str, str] = field(default_factory=dict)
    master_name: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    socket: str | None = None

    @property
    def kind(self) -> str:
        """``server``, ``sentinel``, ``cluster`` or ``socket``."""
        if self.socket is not None:
            return "socket"
        if self.master_name is not None:
            return "sentinel"
        return "cluster" if len(self.hosts) > 1 else "server"


def parse_redis_url(url: str) -> RedisTarget:
    """Read a Redis URL (see the module's documentation); raise ValueError saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ValueError(
            f"URL scheme must be one of {', '.join(_SCHEMES)}, not {parts.scheme or 'none'!r}"
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(options) - set(_OWN_OPTIONS) - set(_TLS_OPTIONS)
    if unknown:
        raise ValueError(f"unknown option {sorted(unknown)[0]!r} in the Redis URL")
    tls = {k: v for k, v in options.items() if k in _TLS_OPTIONS}
    if tls and parts.scheme != "rediss":
        raise ValueError("TLS options need a rediss:// URL")
    if parts.scheme == "unix":
        return RedisTarget(hosts=(), db=_db(options.get("db", "0")), socket=parts.path)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    path_db = parts.path.strip("/")
    return RedisTarget(
        hosts=tuple(_host(h) for h in hostlist.split(",")),
        db=_db(path_db or options.get("db", "0")),
        username=unquote(username) or None,
        password=unquote(password) or None,
        ssl=parts.scheme == "rediss",
        tls=tls,
        master_name=options.get("master_name") or None,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None,
    )


def _host(text: str) -> tuple[str, int]:
    if not text:
        raise ValueError("the Redis URL names no host")
    if text.startswith("["):  # [::1]:6379
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = text.partition(":")
    # The text is not shown: a password with an unencoded "/" or "#" ends up here.
    if not host:
        raise ValueError(f"a host of the Redis URL has no name{_ENCODE}")
    if port and not port.isdigit():
        raise ValueError(f"a port of the Redis URL is not a number{_ENCODE}")
    return host, int(port) if port else _DEFAULT_PORT


def _db(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"database must be a number, not {text!r}")
    return int(text)


def connect(url: str, timeout: float, *, decode: bool = False) -> redis.Redis:
    """A client of the Redis the URL names, with short timeouts and a single immediate retry
    (for a pooled connection that a restart closed): callers fall back or retry with backoff.

    A Cluster client is returned for a Cluster; it is a :class:`redis.Redis` in all but name
    for the commands the warmer sends, and :func:`is_cluster` tells them apart.
    """
    target = parse_redis_url(url)
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 1),
        "health_check_interval": 30,
        "decode_responses": decode,
    }
    credentials: dict[str, Any] = {"username": target.username, "password": target.password}
    tls = _tls_kwargs(target)
    if target.kind == "socket":
        return redis.Redis(unix_socket_path=target.socket, db=target.db, **credentials, **common)
    if target.kind == "cluster":
        cluster: Any = RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in target.hosts],  # type: ignore[no-untyped-call]
            **credentials,
            **tls,
            **{k: v for k, v in common.items() if k != "health_check_interval"},
        )
        return cluster  # type: ignore[no-any-return]
    if target.kind == "sentinel":
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(target.hosts),
            sentinel_kwargs={
                "username": target.sentinel_username,
                "password": target.sentinel_password,
                "socket_timeout": timeout,
                "socket_connect_timeout": timeout,
                **tls,
            },
            **common,
        )
        master = sentinel.master_for(  # type: ignore[no-untyped-call]
            target.master_name or "", db=target.db, **credentials, **tls
        )
        return cast("redis.Redis", master)
    ((host, port),) = target.hosts
    return redis.Redis(host=host, port=port, db=target.db, **credentials, **tls, **common)


def is_sentinel(client: redis.Redis) -> bool:
    """True for a client of a master found through Sentinels (replicated, may fail over)."""
    return isinstance(getattr(client, "connection_pool", None), SentinelConnectionPool)


def sentinels_name_the_same_master(client: redis.Redis) -> bool:
    """For a client found through Sentinels: True when they still name the master it uses."""
    pool: Any = client.connection_pool
    before = pool.master_address
    return bool(before is None or pool.get_master_address() == before)


def is_cluster(client: redis.Redis) -> bool:
    """True for a Redis Cluster client (multi-key scripts cannot run there)."""
    return isinstance(client, RedisCluster)


def _tls_kwargs(target: RedisTarget) -> dict[str, Any]:
    if not target.ssl:
        return {}
    return {"ssl": True, "ssl_cert_reqs": "required", **target.tls}
