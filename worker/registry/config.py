"""The registry's own ``config.yml``: the lines that connect a registry to the warmer.

One function spells them (:func:`registry_config`): ``warmer up`` prints them for a user to
paste, and the demo and the end-to-end tests start real registries with them. The ``redis:``
section is written from the warmer's cache URL (:mod:`worker.connections`), in the shape of the
registry version: 2.x reads one ``addr``; 3.x reads ``addrs`` (several for a Cluster, with
``mastername`` for Sentinel), ACL ``username``, and ``tls`` files, and silently ignores ``addr``.
"""

from __future__ import annotations

import os
from dataclasses import replace

from worker.connections import RedisTarget, parse_redis_url
from worker.errors import ConfigError
from worker.storageurl import StorageTarget
from worker.versions import RegistryVersion

__all__ = ["redis_section", "registry_config"]

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
