"""``warmer up``: receiver, worker and beat together on one machine; ``--dev`` for a first try.

The worker (with beat embedded, ``celery worker -B``) runs as a child process; the receiver in
this one. When either ends, the other is stopped: nothing is left running. SIGTERM or SIGINT
stops the receiver (accepted batches are published first), then the worker (running tasks
finish within ``WARMER_SHUTDOWN_GRACE`` or go back to the queue); after a SIGKILL of this
process the kernel sends the worker SIGTERM (Linux), so it does not outlive it either.

``--dev`` fills in what a newcomer has not configured yet, and says so: throwaway redis-servers
(on free ports, nothing kept) for every Redis URL not set or not answering (a Redis that happens
to run on the machine is never used without being named), ``./var/registry`` as the storage
root, and a token generated once and kept in ``./var/webhook-token``; the Redis servers take the
ports of the last run again when free (``./var/dev-ports.json``), so a registry configured once
keeps working across restarts. It prints the one ``export`` line that points another shell's
``warmer stats``, ``deadletter`` or ``flower`` at this instance.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
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

__all__ = ["DEV_STORAGE_ROOT", "DEV_TOKEN_FILE", "TOKEN_PLACEHOLDER", "registry_snippet", "run_up"]

DEV_STORAGE_ROOT: Final = Path("var/registry")
#: Where ``--dev`` keeps the token it generated.
DEV_TOKEN_FILE: Final = Path("var/webhook-token")
#: Where ``--dev`` keeps the ports of its Redis servers, to take them again.
DEV_PORTS_FILE: Final = Path("var/dev-ports.json")


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
    told = settings.model_fields_set  # set in the environment, a .env or the registry's config
    # The same ports as last time when free: the registry's config names the cache's.
    ports = _kept_ports()
    with ExitStack() as stack:
        if "redis_url" not in told or not _answers(settings.redis_url):
            port = ports["cache"] = stack.enter_context(throwaway_redis(port=ports.get("cache")))
            changes["redis_url"] = f"redis://127.0.0.1:{port}/0"
            say(f"dev: the cache on a throwaway redis-server on 127.0.0.1:{port}")
        # The broker and the state on a server of their own that never evicts (redis-server's
        # default policy), unless both were named, answer and pass the start-up check.
        queues = {
            name: url
            for name, url in (
                ("broker_url", settings.broker_url),
                ("state_url", settings.state_url),
            )
            if url.startswith("redis")
        }
        if queues and (
            not set(queues) <= told
            or not all(_answers(u) for u in queues.values())
            or eviction_problem(settings.model_copy(update=changes)) is not None
        ):
            port = ports["queues"] = stack.enter_context(throwaway_redis(port=ports.get("queues")))
            changes |= {name: f"redis://127.0.0.1:{port}/{db}" for db, name in enumerate(queues)}
            say(
                f"dev: the broker and the state on a throwaway redis-server (noeviction) on "
                f"127.0.0.1:{port}"
            )
        if settings.storage is None:
            DEV_STORAGE_ROOT.mkdir(parents=True, exist_ok=True)
            changes["storage_root"] = DEV_STORAGE_ROOT.resolve()
            say(f"dev: storage root {DEV_STORAGE_ROOT.resolve()} (WARMER_STORAGE_ROOT to change)")
        if settings.webhook_token is None:
            changes["webhook_token"] = SecretStr(_dev_token(say))
        _keep_ports(ports)
        dev = settings.model_copy(update=changes)
        # On a line of its own, to be copied whole.
        say("dev: point another shell (warmer stats, deadletter, flower) here with:")
        say(_exports(dev))
        yield dev


def _dev_token(say: Callable[[str], None]) -> str:
    # Kept across restarts: a registry configured with it once goes on being accepted.
    try:
        token = DEV_TOKEN_FILE.read_text().strip()
    except FileNotFoundError:
        token = ""
    how = "webhook token"
    if not token:
        token, how = secrets.token_urlsafe(24), "generated webhook token"
        DEV_TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(DEV_TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as kept:
            kept.write(token + "\n")
    say(f"dev: {how} {token} (kept in {DEV_TOKEN_FILE}; WARMER_WEBHOOK_TOKEN to set yours)")
    return token


def _kept_ports() -> dict[str, int]:
    try:
        kept = json.loads(DEV_PORTS_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in kept.items() if isinstance(v, int)} if isinstance(kept, dict) else {}


def _keep_ports(ports: dict[str, int]) -> None:
    DEV_PORTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    DEV_PORTS_FILE.write_text(json.dumps(ports) + "\n")


def _exports(settings: Settings) -> str:
    # The settings another `warmer` command needs to see this instance; never a secret.
    values = {
        "WARMER_REDIS_URL": settings.redis_url,
        "WARMER_BROKER_URL": settings.broker_url,
        "WARMER_STATE_URL": settings.state_url,
    }
    if settings.storage_root is not None:
        values["WARMER_STORAGE_ROOT"] = str(settings.storage_root)
    return "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in values.items())


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
    # Beat's schedule in a folder of this run's own: not beside the storage (in the image, its
    # parent /var/lib is not the user's to write), nor the working directory (a checkout, or
    # read-only). What it remembers, when each job last ran, matters little across runs: the
    # heal re-warms an empty cache at start, and each job comes at its next scheduled time.
    with tempfile.TemporaryDirectory(prefix="warmer-beat-") as folder:
        yield from _beat_worker(settings, env, Path(folder) / "schedule")


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
