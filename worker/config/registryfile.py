"""The registry's own ``config.yml``, read and written in one place.

Read (:func:`read_registry_config`, ``WARMER_REGISTRY_CONFIG``): what the warmer needs from it,
the storage driver and its parameters, the cache Redis, and the registry generation. The
registry's ``REGISTRY_...`` environment overrides are applied first, as distribution's
configuration parser applies them (:mod:`worker.config.registryenv`: upper-case field names, map
keys, list indexes, values read as the field's type). So ``REGISTRY_STORAGE_S3_BUCKET=b`` sets
``storage.s3.bucket``, and ``REGISTRY_REDIS_ADDRS=[a:6379]`` sets ``redis.addrs``. What comes out
are values of the warmer's own settings (``storage_url``, ``redis_url``, ``registry_version``);
the settings module lets an explicit ``WARMER_*`` variable win.

Written (:func:`registry_config`): the lines that connect a registry to the warmer. ``warmer up``
prints them for a user to paste, and the demo and the end-to-end tests start real registries with
them. The ``redis:`` section is written from the warmer's cache URL
(:mod:`worker.config.connections`), in the shape of the registry version: 2.x reads one ``addr``;
3.x reads ``addrs`` (several for a Cluster, with ``mastername`` for Sentinel), ACL ``username``,
and ``tls`` files, and silently ignores ``addr``. What is written reads back as what it was
written from (tests/…/test_registry_file.py round-trips it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlencode

import yaml

from worker.config.connections import RedisTarget, parse_redis_url
from worker.config.registryenv import apply_overrides
from worker.config.storageurl import StorageTarget, file_url, s3_url
from worker.errors import ConfigError
from worker.registry.versions import RegistryVersion

__all__ = [
    "apply_overrides",
    "read_registry_config",
    "redis_section",
    "registry_config",
    "warmer_values",
]

#: Keys of ``storage:`` that are not a driver.
_NOT_DRIVERS: Final = frozenset({"cache", "maintenance", "redirect", "delete", "tag", "readonly"})
#: Where the filesystem driver keeps its tree when no rootdirectory is given.
_DEFAULT_ROOT: Final = "/var/lib/registry"


def read_registry_config(
    path: str | os.PathLike[str], environ: Mapping[str, str]
) -> dict[str, Any]:
    """The warmer's settings from the registry's config file and ``REGISTRY_...`` overrides."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"WARMER_REGISTRY_CONFIG: cannot read {path}: {exc.strerror or exc}"
        ) from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"WARMER_REGISTRY_CONFIG: {path} is not YAML: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"WARMER_REGISTRY_CONFIG: {path} is not a registry configuration")
    return warmer_values(apply_overrides(config, environ), where=str(path))


def warmer_values(
    config: Mapping[str, Any], *, where: str = "the registry config"
) -> dict[str, Any]:
    """``storage_url``, ``redis_url`` and ``registry_version`` from a parsed registry config."""
    values: dict[str, Any] = {}
    storage = config.get("storage")
    if isinstance(storage, dict):
        values["storage_url"] = _storage_url(storage, where)
    redis = config.get("redis")
    if isinstance(redis, dict) and _addrs(redis):
        values["redis_url"] = _redis_url(redis)
        # 3.x reads a list of addrs and ignores addr; 2.x reads addr.
        values["registry_version"] = "3" if redis.get("addrs") else "2"
    return values


def _storage_url(storage: dict[str, Any], where: str) -> str:
    drivers = [k for k in storage if k not in _NOT_DRIVERS]
    if len(drivers) != 1:
        raise ConfigError(
            f"WARMER_REGISTRY_CONFIG: {where} names {len(drivers)} storage drivers "
            f"({', '.join(map(str, drivers)) or 'none'}); a registry has exactly one"
        )
    driver = str(drivers[0])
    params = storage[driver] if isinstance(storage[driver], dict) else {}
    if driver == "filesystem":
        return file_url(str(params.get("rootdirectory") or _DEFAULT_ROOT))
    if driver in ("s3", "s3aws"):
        bucket = str(params.get("bucket") or "")
        if not bucket:
            raise ConfigError(f"WARMER_REGISTRY_CONFIG: {where}: storage.s3 names no bucket")
        endpoint = str(params.get("regionendpoint") or "") or None
        if endpoint and "://" not in endpoint:
            endpoint = ("https://" if params.get("secure", True) else "http://") + endpoint
        path_style = params.get("forcepathstyle")
        return s3_url(
            bucket,
            str(params.get("rootdirectory") or ""),
            region=str(params.get("region") or "") or None,
            endpoint=endpoint,
            access_key=str(params.get("accesskey") or "") or None,
            secret_key=str(params.get("secretkey") or "") or None,
            path_style=None if path_style is None else _truthy(path_style),
            verify=not _truthy(params.get("skipverify", False)),
        )
    raise ConfigError(
        f"WARMER_REGISTRY_CONFIG: the registry stores in {driver!r}; the warmer reads the "
        "filesystem and s3 drivers (S3-compatible stores included), not gcs, azure or others"
    )


def _truthy(value: object) -> bool:
    return value is True or str(value).lower() in ("1", "true", "yes", "on")


def _harbor_sentinel(redis: dict[str, Any]) -> tuple[str | None, list[Any]]:
    # Harbor's registry (distribution with Harbor's make/photon/registry/redis.patch) reaches a
    # Sentinel its own way: the config.yml Harbor generates (templates/registry/config.yml.jinja,
    # goharbor/harbor commit 0063430f, the v2.7 line) writes ``addr: s1:26379,s2:26379`` and
    # ``sentinelMasterSet: NAME``; a later redis.patch (commit 55de9252, on go-redis) reads
    # ``sentinel: {masterName, addresses}``.
    nested = redis.get("sentinel")
    if isinstance(nested, dict) and nested.get("masterName") and nested.get("addresses"):
        addresses = nested["addresses"]
        return str(nested["masterName"]), addresses if isinstance(addresses, list) else [addresses]
    if redis.get("sentinelMasterSet"):
        return str(redis["sentinelMasterSet"]), []
    return None, []


def _addrs(redis: dict[str, Any]) -> list[str]:
    # The Redis addresses a registry config names, one a server: Harbor's ``addr`` of
    # Sentinels holds several, separated by commas.
    given = _harbor_sentinel(redis)[1] or redis.get("addrs") or [redis.get("addr")]
    if isinstance(given, str):
        given = [given]
    if not isinstance(given, list):
        return []
    return [a.strip() for item in given if item for a in str(item).split(",") if a.strip()]


def _redis_url(redis: dict[str, Any]) -> str:
    addrs = _addrs(redis)
    db = int(redis.get("db") or 0)
    tls: dict[str, Any] = redis["tls"] if isinstance(redis.get("tls"), dict) else {}
    if len(addrs) == 1 and addrs[0].startswith("/"):
        return f"unix://{addrs[0]}?db={db}"
    user = quote(str(redis.get("username") or ""), safe="")
    password = quote(str(redis.get("password") or ""), safe="")
    userinfo = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    options: dict[str, str] = {}
    master = redis.get("mastername") or _harbor_sentinel(redis)[0]
    if master:
        options["master_name"] = str(master)
        for key in ("sentinelusername", "sentinelpassword"):
            if redis.get(key):
                options[f"sentinel_{key[8:]}"] = str(redis[key])
    secure = bool(tls) and (
        _truthy(tls.get("enabled")) or bool(tls.get("rootcas")) or bool(tls.get("certificate"))
    )
    if secure:
        rootcas = tls.get("rootcas") or []
        if isinstance(rootcas, str):
            rootcas = [rootcas]
        if rootcas:
            options["ssl_ca_certs"] = str(rootcas[0])
        if tls.get("certificate"):
            options["ssl_certfile"] = str(tls["certificate"])
        if tls.get("key"):
            options["ssl_keyfile"] = str(tls["key"])
    scheme = "rediss" if secure else "redis"
    # A Cluster has no DB numbers: its URL names none.
    path = "" if len(addrs) > 1 and "master_name" not in options else f"/{db}"
    query = f"?{urlencode(options)}" if options else ""
    return f"{scheme}://{userinfo}{','.join(addrs)}{path}{query}"


# What a printed snippet shows for a password.
_HIDDEN = "<the password in WARMER_REDIS_URL>"
_HIDDEN_S3 = "<the secret key of WARMER_STORAGE_URL>"
# Where Debian (and the registry image's Alpine) keep the system's CA bundle.
_SYSTEM_CAS = "/etc/ssl/certs/ca-certificates.crt"


def registry_config(
    *,
    version: RegistryVersion,
    root: str | os.PathLike[str],
    redis_url: str,
    notify_url: str | None = None,
    token: str | None = None,
    delete: bool = False,
    passwords: bool = True,
    storage: StorageTarget | None = None,
) -> str:
    """The ``storage``, ``redis`` and (with ``notify_url``) ``notifications`` sections, as YAML.

    ``token`` is the warmer's ``WARMER_WEBHOOK_TOKEN``, sent as ``Authorization: Bearer``.
    Without ``passwords`` the Redis passwords are placeholders (for a snippet that is printed).
    An ``s3`` ``storage`` gives an ``s3`` section instead of ``filesystem`` at ``root``.
    """
    lines = ["storage:", "  cache:", "    blobdescriptor: redis"]
    if storage is not None and storage.driver == "s3":
        lines += _s3(storage, passwords=passwords)
    else:
        lines += ["  filesystem:", f"    rootdirectory: {os.fspath(root)}"]
    if delete:
        lines += ["  delete:", "    enabled: true"]
    lines += redis_section(version, redis_url, passwords=passwords)
    if notify_url is not None:
        lines += [
            "notifications:",
            "  endpoints:",
            "    - name: warmer",
            f"      url: {notify_url}",
            "      headers:",
            f"        Authorization: [Bearer {token or 'CHANGE-ME'}]",
            "      timeout: 2s",
            "      threshold: 5",
            "      backoff: 1s",
        ]
    return "\n".join(lines)


def _s3(storage: StorageTarget, *, passwords: bool) -> list[str]:
    lines = ["  s3:", f"    bucket: {storage.bucket}"]
    lines.append(f"    region: {storage.region or 'us-east-1'}")
    for key, value in (
        ("regionendpoint", storage.endpoint),
        ("rootdirectory", f"/{storage.root}" if storage.root else None),
        ("accesskey", storage.access_key),
        ("secretkey", storage.secret_key if passwords else storage.secret_key and _HIDDEN_S3),
    ):
        if value:
            lines.append(f"    {key}: {value}")
    if storage.path_style or (storage.path_style is None and storage.endpoint):
        lines.append("    forcepathstyle: true")
    if not storage.verify:
        lines.append("    skipverify: true")
    return lines


def redis_section(version: RegistryVersion, redis_url: str, *, passwords: bool = True) -> list[str]:
    """The registry's ``redis:`` section for the cache the warmer's URL names."""
    target = parse_redis_url(redis_url)
    if not passwords:
        target = replace(
            target,
            password=target.password and _HIDDEN,
            sentinel_password=target.sentinel_password and _HIDDEN,
        )
    if version is RegistryVersion.V3:
        return _v3(target)
    if target.kind not in ("server", "socket") or target.username or target.ssl:
        raise ConfigError(
            f"registry {version.value} reaches one Redis by addr and password only; "
            "a Cluster, Sentinel, TLS or an ACL user needs registry 3.x"
        )
    addr = target.socket if target.socket else ":".join(map(str, target.hosts[0]))
    lines = ["redis:", f"  addr: {addr}", f"  db: {target.db}"]
    if target.password:
        lines.append(f"  password: {target.password}")
    return lines


def _v3(target: RedisTarget) -> list[str]:
    addrs = [target.socket] if target.socket else [f"{h}:{p}" for h, p in target.hosts]
    lines = ["redis:", f"  addrs: [{', '.join(str(a) for a in addrs)}]", f"  db: {target.db}"]
    for key, value in (
        ("mastername", target.master_name),
        ("username", target.username),
        ("password", target.password),
        ("sentinelusername", target.sentinel_username),
        ("sentinelpassword", target.sentinel_password),
    ):
        if value:
            lines.append(f"  {key}: {value}")
    if target.ssl:
        # 3.1 turns TLS on when it has a CA to check the server with (tls.rootcas).
        lines += [
            "  tls:",
            f"    rootcas: [{target.tls.get('ssl_ca_certs', _SYSTEM_CAS)}]",
        ]
        if "ssl_certfile" in target.tls:
            lines.append(f"    certificate: {target.tls['ssl_certfile']}")
        if "ssl_keyfile" in target.tls:
            lines.append(f"    key: {target.tls['ssl_keyfile']}")
    return lines
