"""The image itself, as built by tests/image/run: its command line, its user, and its default
command (``warmer up``) healthy by its own HEALTHCHECK, warming a push through a real registry
into a cache, and stopping cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import tomllib
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.image.podman import IMAGE, Container, Podman
from tests.image.warm import TAG, pushed_image, wait_warm
from tests.support.compose import ROOT
from worker.cli.demo.registry import DEBIAN_REGISTRY, running_registry
from worker.cli.processes import throwaway_redis, wait_until

TOKEN = "image-test-token-0123456789"
#: The image's user (Dockerfile).
UID = 10001
#: What the compose file gives the warmer to stop in, past its 15 s shutdown grace.
GRACE = 30


def _version() -> str:
    version: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return version


def secret_file(path: Path, value: str) -> str:
    """A secret as docs/deployment.md makes one: a line, readable by the image's user only."""
    path.write_text(value + "\n")
    os.chown(path, UID, UID)
    path.chmod(0o400)
    return str(path)


def test_help_version_and_user(podman: Podman) -> None:
    shown = podman.once("--help")
    assert shown.returncode == 0, shown.stderr
    for command in ("up", "webhook", "worker", "beat", "flower", "rewarm", "reconcile"):
        assert f" {command} " in shown.stdout, command
    version = podman.once("--version")
    assert (version.returncode, version.stdout.strip()) == (0, _version()), version.stderr
    who = podman.run("run", "--rm", "--pull=never", "--entrypoint", "id", IMAGE, "-u")
    assert who.stdout.strip() == str(UID)
    inspected = json.loads(podman.check("image", "inspect", IMAGE))[0]
    assert inspected["Config"]["Entrypoint"] == ["warmer"]
    assert inspected["Config"]["Cmd"] == ["up", "--host", "0.0.0.0"]
    assert "/healthz" in " ".join(inspected["Healthcheck"]["Test"])  # kept: --format docker


@dataclass
class _Up:
    """The image's default command running against Redis servers of the test's own."""

    container: Container
    root: Path
    caches: int  # the registry's cache (DB 0), and a replica's only the warmer fills (DB 1)
    queues: int  # the warmer's broker (DB 0) and state (DB 1)


def _up(podman: Podman, tmp_path: Path, stack: ExitStack) -> _Up:
    root = tmp_path / "storage"
    root.mkdir()
    token = secret_file(tmp_path / "webhook_token", TOKEN)
    caches = stack.enter_context(throwaway_redis(directory=tmp_path))
    queues = stack.enter_context(throwaway_redis(directory=tmp_path))
    container = podman.start(
        "warmer-up",
        *("-e", f"WARMER_REDIS_URL=redis://127.0.0.1:{caches}/1"),
        *("-e", f"WARMER_BROKER_URL=redis://127.0.0.1:{queues}/0"),
        *("-e", f"WARMER_STATE_URL=redis://127.0.0.1:{queues}/1"),
        *("-e", "WARMER_STORAGE_ROOT=/var/lib/registry"),
        *("-e", f"WARMER_REGISTRY_VERSION={DEBIAN_REGISTRY.version.value}"),
        *("-e", "WARMER_WEBHOOK_TOKEN_FILE=/run/secrets/webhook_token"),
        *("-v", f"{root}:/var/lib/registry:ro"),
        *("-v", f"{token}:/run/secrets/webhook_token:ro"),
    )  # its default command: warmer up --host 0.0.0.0 (port 8000)
    container.wait_healthy(timeout=90)
    return _Up(container, root, caches, queues)


def test_the_default_command_is_healthy_warms_a_push_and_stops_on_sigterm(
    podman: Podman, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        up = _up(podman, tmp_path, stack)
        origin = stack.enter_context(
            running_registry(
                tmp_path / "origin",
                root=up.root,
                redis_url=f"redis://127.0.0.1:{up.caches}/0",
                notify_url="http://127.0.0.1:8000/events",
                token=TOKEN,
            )
        )
        image, layout = pushed_image(tmp_path)
        origin.push(layout, TAG)
        wait_warm(
            image,
            redis.Redis(port=up.caches, db=1),
            redis.Redis(port=up.queues, db=1),
            DEBIAN_REGISTRY.version,
            timeout=60,
        )
        replica = stack.enter_context(
            running_registry(
                tmp_path / "replica", root=up.root, redis_url=f"redis://127.0.0.1:{up.caches}/1"
            )
        )
        replica.pull(TAG, tmp_path / "pulled")
        counts = replica.cache_counts()
        assert counts["Request"] > 0
        assert counts["Miss"] == 0, counts  # the first pull: all from what the warmer wrote
        # `docker inspect` shows no secret: the token is a file.
        assert TOKEN not in json.dumps(up.container.inspect())
        before = len(up.container.logs())
        took, code = up.container.stop(GRACE)
        stopping = up.container.logs()[before:]
        assert took < GRACE - 5, f"stopped in {took:.1f}s: {stopping[-2000:]}"
        assert code == 0, f"exit {code}: {stopping[-2000:]}"
        assert "Traceback" not in stopping, stopping[-3000:]
        assert "Shutting down" in stopping


def test_the_default_command_starts_without_a_traceback(podman: Podman, tmp_path: Path) -> None:
    with ExitStack() as stack:
        up = _up(podman, tmp_path, stack)
        wait_until(
            lambda: "beat: Starting" in up.container.logs(), timeout=30, what="beat to start"
        )
        log = up.container.logs()
        assert "Traceback" not in log, log[-3000:]
