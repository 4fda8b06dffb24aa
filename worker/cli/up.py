"""``warmer up``: receiver, worker and beat together on one machine; ``--dev`` for a first try.

The worker (with beat embedded, ``celery worker -B``) runs as a child process; the receiver in
this one. When either ends, the other is stopped: nothing is left running. SIGTERM or SIGINT
stops the receiver (accepted batches are published first), then the worker (running tasks
finish within ``WARMER_SHUTDOWN_GRACE`` or go back to the queue); after a SIGKILL of this
process the kernel sends the worker SIGTERM (Linux), so it does not outlive it either.

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
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Final

import redis
from pydantic import SecretStr

from worker.celeryapp import create_app
from worker.cli.processes import die_with_parent, stop_leader_then_group, throwaway_redis
from worker.cli.serve import listen, serve_webhook
from worker.config.connections import connect
from worker.config.registryfile import registry_config
from worker.config.settings import Settings
from worker.core.eviction import check_never_evicts, eviction_problem
from worker.errors import ConfigError
from worker.receiver.assembly import build_webhook

__all__ = ["DEV_STORAGE_ROOT", "TOKEN_PLACEHOLDER", "registry_snippet", "run_up"]

DEV_STORAGE_ROOT: Final = Path("var/registry")


#: What the printed snippet shows instead of the token outside ``--dev``: ``up`` is the
#: container's default command, and its output ends up in logs.
TOKEN_PLACEHOLDER: Final = "<your WARMER_WEBHOOK_TOKEN>"


def registry_snippet(settings: Settings, host: str, port: int, *, show_token: bool = False) -> str:
    """What to paste into the registry's config.yml for this warmer; the token only if shown."""
    token = settings.webhook_token.get_secret_value() if settings.webhook_token else None
    where = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return registry_config(
        version=settings.registry_version,
        root=settings.storage.root if settings.storage else str(settings.storage_root),
        storage=settings.storage,
        redis_url=settings.redis_url,
        notify_url=f"http://{where}:{port}/events",
        token=token if show_token else TOKEN_PLACEHOLDER,
        passwords=False,  # a printed snippet names the password's place, never the password
    )


def run_up(
    settings: Settings, host: str, port: int, *, dev: bool, say: Callable[[str], None] = print
) -> None:
    """Run everything until interrupted; with ``dev``, on throwaway defaults."""
    with ExitStack() as stack:
        # The port first: in use, it is one line and nothing was started.
        listener = stack.enter_context(listen(host, port))
        # A token --dev generated is throwaway: it may be printed. One the user set never is.
        generated = dev and settings.webhook_token is None
        if dev:
            settings = stack.enter_context(_dev_defaults(settings, say))
        if settings.storage is None:
            raise ConfigError(
                "no storage configured: set WARMER_STORAGE_URL, WARMER_STORAGE_ROOT or "
                "WARMER_REGISTRY_CONFIG (or run `warmer up --dev`)"
            )
        asgi = build_webhook(settings, create_app(settings))  # refuses to run without a token
        check_never_evicts(settings)
        snippet = registry_snippet(settings, host, port, show_token=generated)
        say(f"\nPaste into the registry's config.yml:\n\n{snippet}\n")
        stack.enter_context(_worker(settings))
        serve_webhook(asgi, listener)


@contextmanager
def _dev_defaults(settings: Settings, say: Callable[[str], None]) -> Iterator[Settings]:
    changes: dict[str, object] = {}
    with ExitStack() as stack:
        if not _answers(settings.redis_url):
            port = stack.enter_context(throwaway_redis())
            changes["redis_url"] = f"redis://127.0.0.1:{port}/0"
            say(f"dev: no Redis answered; started a throwaway redis-server on 127.0.0.1:{port}")
        # The broker and the state on a server of their own that never evicts (redis-server's
        # default policy), unless the configured ones answer and pass the start-up check.
        queues = {
            name: url
            for name, url in (
                ("broker_url", settings.broker_url),
                ("state_url", settings.state_url),
            )
            if url.startswith("redis")
        }
        if queues and (
            not all(_answers(u) for u in queues.values())
            or eviction_problem(settings.model_copy(update=changes)) is not None
        ):
            port = stack.enter_context(throwaway_redis())
            changes |= {name: f"redis://127.0.0.1:{port}/{db}" for db, name in enumerate(queues)}
            say(
                f"dev: started a throwaway redis-server on 127.0.0.1:{port} (noeviction) for "
                "the broker and the state"
            )
        if settings.storage is None:
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
        client = connect(url, 0.5)  # every form of Redis URL the settings take
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, ValueError):
        return False


@contextmanager
def _worker(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    # The child reads the same settings the way every warmer process does: the environment.
    env = {**os.environ, **settings.environment()}
    with ExitStack() as stack:
        # Beside a local store; with S3, a folder of this run's own (not the working directory,
        # which may be a checkout or read-only).
        folder = (
            Path(settings.storage_root).parent
            if settings.storage_root is not None
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="warmer-beat-")))
        )
        yield from _beat_worker(settings, env, folder / ".warmer-beat-schedule")


def _beat_worker(
    settings: Settings, env: dict[str, str], schedule: Path
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker", "worker", "-B", "--schedule", str(schedule)],
        env=env,
        start_new_session=True,
        # A SIGKILL of this process leaves no orphan consuming with old settings.
        preexec_fn=die_with_parent(),  # noqa: PLW1509 (a system call only, see there)
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
        # The worker's grace for running tasks, and a little for its pool and beat to go.
        stop_leader_then_group(proc, settings.shutdown_grace + 5)
