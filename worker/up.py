"""``warmer up``: receiver, worker and beat together on one machine; ``--dev`` for a first try.

The worker (with beat embedded, ``celery worker -B``) runs as a child process; the receiver in
this one. When either ends, the other is stopped: nothing is left running.

``--dev`` fills in what a newcomer has not configured yet, and says so: a throwaway
redis-server (on a free port, nothing kept) when no Redis answers at the configured URLs,
``./var/registry`` as the storage root, and a generated token.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Final

import redis
from pydantic import SecretStr

from worker.celery_app import create_app
from worker.errors import ConfigError
from worker.processes import stop_group, throwaway_redis
from worker.serve import build_webhook, serve_webhook
from worker.settings import Settings

__all__ = ["DEV_STORAGE_ROOT", "registry_snippet", "run_up"]

DEV_STORAGE_ROOT: Final = Path("var/registry")


def registry_snippet(settings: Settings, host: str, port: int) -> str:
    """What to paste into the registry's config.yml for this warmer."""
    token = settings.webhook_token.get_secret_value() if settings.webhook_token else "CHANGE-ME"
    cache = redis.Redis.from_url(settings.redis_url).connection_pool.connection_kwargs
    where = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"""storage:
  cache:
    blobdescriptor: redis
  filesystem:
    rootdirectory: {settings.storage_root}
redis:
  addr: {cache.get("host", "localhost")}:{cache.get("port", 6379)}
  db: {cache.get("db", 0)}
notifications:
  endpoints:
    - name: warmer
      url: http://{where}:{port}/events
      headers:
        Authorization: [Bearer {token}]
      timeout: 2s
      threshold: 5
      backoff: 1s"""


def run_up(
    settings: Settings, host: str, port: int, *, dev: bool, say: Callable[[str], None] = print
) -> None:
    """Run everything until interrupted; with ``dev``, on throwaway defaults."""
    with ExitStack() as stack:
        if dev:
            settings = stack.enter_context(_dev_defaults(settings, say))
        if settings.storage_root is None:
            raise ConfigError("WARMER_STORAGE_ROOT is not set (or run `warmer up --dev`)")
        asgi = build_webhook(settings, create_app(settings))  # refuses to run without a token
        say(
            f"\nPaste into the registry's config.yml:\n\n{registry_snippet(settings, host, port)}\n"
        )
        stack.enter_context(_worker(settings))
        serve_webhook(asgi, host, port)


@contextmanager
def _dev_defaults(settings: Settings, say: Callable[[str], None]) -> Iterator[Settings]:
    changes: dict[str, object] = {}
    with ExitStack() as stack:
        urls = {
            "redis_url": settings.redis_url,
            "broker_url": settings.broker_url,
            "state_url": settings.state_url,
        }
        if not all(_answers(u) for u in urls.values() if u.startswith("redis")):
            port = stack.enter_context(throwaway_redis())
            changes |= {
                name: f"redis://127.0.0.1:{port}/{db}"
                for db, name in enumerate(("redis_url", "broker_url", "state_url"))
            }
            say(f"dev: no Redis answered; started a throwaway redis-server on 127.0.0.1:{port}")
        if settings.storage_root is None:
            DEV_STORAGE_ROOT.mkdir(parents=True, exist_ok=True)
            changes["storage_root"] = DEV_STORAGE_ROOT.resolve()
            say(f"dev: storage root {DEV_STORAGE_ROOT.resolve()} (WARMER_STORAGE_ROOT to change)")
        if settings.webhook_token is None:
            token = secrets.token_urlsafe(24)
            changes["webhook_token"] = SecretStr(token)
            say(f"dev: generated webhook token {token} (WARMER_WEBHOOK_TOKEN to set your own)")
        yield settings.model_copy(update=changes)


def _answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        return bool(client.ping())
    except (redis.RedisError, ValueError):
        return False


@contextmanager
def _worker(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, **_environment(settings)}
    schedule = Path(settings.storage_root or ".").parent / ".warmer-beat-schedule"
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker", "worker", "-B", "--schedule", str(schedule)],
        env=env,
        start_new_session=True,
    )
    stopping = threading.Event()

    def watch() -> None:
        # The worker gone means warming stopped: take the receiver down too, and say why.
        proc.wait()
        if not stopping.is_set():
            print(f"warmer up: the worker exited ({proc.returncode}); stopping", file=sys.stderr)
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()
    try:
        yield proc
    finally:
        stopping.set()
        stop_group(proc)


def _environment(settings: Settings) -> dict[str, str]:
    # The child reads the same settings the way every warmer process does: the environment.
    env = {
        "WARMER_REDIS_URL": settings.redis_url,
        "WARMER_BROKER_URL": settings.broker_url,
        "WARMER_STATE_URL": settings.state_url,
        "WARMER_SCHEMA": settings.cache_schema.value,
        "WARMER_STORAGE_ROOT": str(settings.storage_root),
        "WARMER_VISIBILITY_TIMEOUT": str(settings.visibility_timeout),
        "WARMER_REDIS_TIMEOUT": str(settings.redis_timeout),
    }
    if settings.result_backend:
        env["WARMER_RESULT_BACKEND"] = settings.result_backend
    if settings.webhook_token:
        env["WARMER_WEBHOOK_TOKEN"] = settings.webhook_token.get_secret_value()
    if settings.sentry_dsn:
        env["SENTRY_DSN"] = settings.sentry_dsn.get_secret_value()
    return env
