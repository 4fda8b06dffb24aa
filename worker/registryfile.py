"""The registry's own ``config.yml`` (``WARMER_REGISTRY_CONFIG``), read for what the warmer needs:
the storage driver and its parameters, the cache Redis, and the registry generation.

The registry's ``REGISTRY_...`` environment overrides are applied first, as distribution's
configuration parser applies them: variables sorted by name, the name split at ``_`` into a path
of keys matched without regard to case (a missing key is created, lower case), the value read as
YAML. So ``REGISTRY_STORAGE_S3_BUCKET=b`` sets ``storage.s3.bucket``, and
``REGISTRY_REDIS_ADDRS=[a:6379]`` sets ``redis.addrs``.

What comes out are values of the warmer's own settings (``storage_url``, ``redis_url``,
``registry_version``); the settings module lets an explicit ``WARMER_*`` variable win.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlencode

import yaml

from worker.errors import ConfigError
from worker.storageurl import file_url, s3_url

__all__ = ["apply_overrides", "read_registry_config", "warmer_values"]

_PREFIX: Final = "REGISTRY_"
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


def apply_overrides(config: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """``config`` with the registry's ``REGISTRY_...`` environment overrides applied."""
    for name in sorted(environ):
        if not name.startswith(_PREFIX) or name == f"{_PREFIX}CONFIGURATION_PATH":
            continue
        keys = name.split("_")[1:]
        if not all(keys):
            continue
        try:
            value = yaml.safe_load(environ[name])
        except yaml.YAMLError:
            value = environ[name]
        if keys == ["STORAGE"] and isinstance(value, str):
            value = {value: {}}  # the registry reads a bare driver name as that driver
        _set(config, keys, value)
    return config


def _set(node: dict[str, Any], keys: list[str], value: Any) -> None:
    head = next((k for k in node if str(k).upper() == keys[0]), keys[0].lower())
    if len(keys) == 1:
        node[head] = value
        return
    child = node.get(head)
    if not isinstance(child, dict):
        child = {}
        node[head] = child
    _set(child, keys[1:], value)


def warmer_values(
    config: Mapping[str, Any], *, where: str = "the registry config"
) -> dict[str, Any]:
    """``storage_url``, ``redis_url`` and ``registry_version`` from a parsed registry config."""
    values: dict[str, Any] = {}
    storage = config.get("storage")
    if isinstance(storage, dict):
        values["storage_url"] = _storage_url(storage, where)
    redis = config.get("redis")
    if isinstance(redis, dict) and (redis.get("addrs") or redis.get("addr")):
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


def _redis_url(redis: dict[str, Any]) -> str:
    addrs = redis.get("addrs") or [redis.get("addr")]
    if isinstance(addrs, str):
        addrs = [a.strip() for a in addrs.split(",")]
    addrs = [str(a) for a in addrs if a]
    db = int(redis.get("db") or 0)
    tls: dict[str, Any] = redis["tls"] if isinstance(redis.get("tls"), dict) else {}
    if len(addrs) == 1 and addrs[0].startswith("/"):
        return f"unix://{addrs[0]}?db={db}"
    user = quote(str(redis.get("username") or ""), safe="")
    password = quote(str(redis.get("password") or ""), safe="")
    userinfo = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    options: dict[str, str] = {}
    if redis.get("mastername"):
        options["master_name"] = str(redis["mastername"])
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
