"""Running the receiver under uvicorn: one process, or several on one listening socket
(``warmer webhook --workers N``), supervised here: a receiver that dies stops the others."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Final

import uvicorn
from starlette.types import ASGIApp

from worker.cli.processes import die_with_parent
from worker.errors import ConfigError

__all__ = ["GRACEFUL_SHUTDOWN_SECONDS", "listen", "serve_webhook", "serve_webhooks"]

_log = logging.getLogger(__name__)

#: How long open requests may take to finish at shutdown; the batches they were accepted into
#: are published after (the app's lifespan drains the batcher).
GRACEFUL_SHUTDOWN_SECONDS: Final = 5


def listen(host: str, port: int) -> socket.socket:
    """The receiver's listening socket, bound before anything else starts: a port in use is one
    line (ConfigError) and nothing left running, not a server error after the worker began."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConfigError(
            f"cannot listen on {host}:{port}: {reason} (another process holds the port: stop "
            "it, or pass --port)"
        ) from None


def _config(asgi: ASGIApp) -> uvicorn.Config:
    # access_log off: every registry request would be a line; the receiver logs what matters.
    # uvicorn picks httptools and uvloop, installed with the warmer (BENCHMARKS.md).
    # log_config None: uvicorn's loggers go through the warmer's one format (config.logformat).
    return uvicorn.Config(
        asgi,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def serve_webhook(asgi: ASGIApp, listener: socket.socket) -> None:
    """Run the receiver until SIGTERM or SIGINT; then drain what was accepted, and return."""
    # uvicorn shuts down on SIGTERM, then raises the signal again with the handler it found:
    # Python's default would end the process on the spot, skipping every cleanup of the
    # caller (``warmer up`` stopping its worker). A SystemExit unwinds through it instead.
    signal.signal(signal.SIGTERM, _exit)
    # SIGINT, after the same shutdown, comes back as KeyboardInterrupt: a clean end too.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(_config(asgi)).run(sockets=[listener])


def serve_webhooks(build: Callable[[], ASGIApp], listener: socket.socket, workers: int) -> None:
    """Run ``workers`` receiver processes on ``listener`` (:func:`listen`) until SIGTERM or
    SIGINT.

    One Python process is one core: the receivers share the listening socket, and the kernel
    hands each connection to one of them. Each builds its own app and clients after the fork (no
    connection is shared). SIGTERM or SIGINT here is passed on as SIGTERM; each receiver drains
    what it accepted and ends, then this process returns. A receiver that dies on its own stops
    the others, and this process exits 1 (its supervisor restarts it); this process killed, the
    receivers get SIGTERM from the kernel (``PR_SET_PDEATHSIG``).
    """
    if workers < 2:
        serve_webhook(build(), listener)
        return
    on_parent_death = die_with_parent()
    children: set[int] = set()
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover (runs in the child, which never returns)
            _receiver_child(build, listener, on_parent_death)
        children.add(pid)
    listener.close()  # the receivers hold it
    stopping = False

    def stop(signum: int, _: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            with contextlib.suppress(ProcessLookupError):  # ended already
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failed = False
    while children:
        pid, status = os.wait()
        children.discard(pid)
        if not stopping:
            _log.error("receiver process %d ended (status %d): stopping the others", pid, status)
            failed = True
            stop(signal.SIGTERM, None)
    if failed:
        raise SystemExit(1)


def _receiver_child(
    build: Callable[[], ASGIApp], listener: socket.socket, on_parent_death: Callable[[], None]
) -> None:
    code = 1
    try:
        on_parent_death()
        # As in one process: both signals end in a clean shutdown, then an exception here.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _exit)
        uvicorn.Server(_config(build())).run(sockets=[listener])
        code = 0
    except KeyboardInterrupt:
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:
        _log.exception("receiver process failed")
    finally:
        # Never back into the parent's code: the fork's copy of its stack ends here.
        os._exit(code)


def _exit(signum: int, _: object) -> None:
    raise SystemExit(0)
