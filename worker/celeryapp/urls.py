"""The warmer's Redis URLs in the shape Celery and kombu read them.

One URL format serves every Redis the warmer uses (:mod:`worker.config.connections`). Celery's
broker and result backend spell two of its cases their own way: a Sentinel is a ``;``-separated
list of ``sentinel://`` URLs with the master's name in the transport options, and a
``rediss://`` URL must say ``ssl_cert_reqs``. Everything else is passed as it is."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from worker.config.connections import parse_redis_url

__all__ = ["celery_redis"]


def celery_redis(url: str) -> tuple[str, dict[str, Any]]:
    """``(URL, transport options)`` for Celery of a broker or result backend URL."""
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss"):
        return url, {}  # RabbitMQ, or kombu's own sentinel:// list: Celery's already
    target = parse_redis_url(url)
    if target.kind != "sentinel":
        if scheme == "rediss" and "ssl_cert_reqs" not in url:
            url += ("&" if "?" in url else "?") + "ssl_cert_reqs=required"
        return url, {}
    auth = ""
    if target.password:
        auth = f"{quote(target.username or '', safe='')}:{quote(target.password, safe='')}@"
    sentinels = ";".join(f"sentinel://{auth}{h}:{p}/{target.db}" for h, p in target.hosts)
    options: dict[str, Any] = {"master_name": target.master_name}
    sentinel_auth = {
        k: v
        for k, v in (
            ("username", target.sentinel_username),
            ("password", target.sentinel_password),
        )
        if v
    }
    if sentinel_auth:
        options["sentinel_kwargs"] = sentinel_auth
    return sentinels, options
