"""podman, as tests/image/run configured it (CONTAINERS_CONF and friends in the environment),
for the image tier: containers started, checked, stopped and always removed."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from worker.cli.processes import wait_until

__all__ = ["BASE", "IMAGE", "Container", "Podman"]

#: The image under test, and the base it was built on (tests/image/run sets both).
IMAGE = os.environ.get("IMAGE_TEST_TAG", "")
BASE = os.environ.get("IMAGE_TEST_BASE", "")
_LABEL = os.environ.get("IMAGE_TEST_LABEL", "registry-cache-warmer.image-test")


@dataclass
class Container:
    """A container started by :meth:`Podman.start`."""

    name: str
    podman: Podman

    def exec(self, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        """``podman exec`` in it."""
        extra = ["--user", user] if user else []
        return self.podman.run("exec", *extra, self.name, *args)

    def health(self) -> subprocess.CompletedProcess[str]:
        """``podman healthcheck run``: its HEALTHCHECK (or --health-cmd), run once as Docker
        would; exit 0 when healthy."""
        return self.podman.run("healthcheck", "run", self.name)

    def wait_healthy(self, timeout: float) -> None:
        """Poll the health check until it passes; fail with the logs when the container exits
        or the deadline passes."""

        def healthy() -> bool:
            if not self.running():
                raise AssertionError(f"{self.name} exited: {self.logs()[-3000:]}")
            return self.health().returncode == 0

        try:
            wait_until(healthy, timeout=timeout, what=f"{self.name} healthy", interval=1)
        except TimeoutError as exc:
            checks = self.inspect()["State"].get("Health", {}).get("Log") or []
            last = checks[-1].get("Output", "") if checks else ""
            raise AssertionError(
                f"{exc}; the last check said: {last[-1500:]}; its log: {self.logs()[-3000:]}"
            ) from None

    def inspect(self) -> dict[str, Any]:
        """``podman inspect``: what ``docker inspect`` shows of it."""
        data: list[dict[str, Any]] = json.loads(self.podman.check("inspect", self.name))
        return data[0]

    def running(self) -> bool:
        return bool(self.inspect()["State"]["Running"])

    def logs(self) -> str:
        proc = self.podman.run("logs", self.name)
        return proc.stdout + proc.stderr

    def stop(self, grace: float) -> tuple[float, int]:
        """``podman stop -t GRACE`` (SIGTERM, SIGKILL after the grace): the seconds it took and
        the exit code (137: killed)."""
        start = time.monotonic()
        self.podman.check("stop", "-t", str(int(grace)), self.name)
        took = time.monotonic() - start
        return took, int(self.inspect()["State"]["ExitCode"])


@dataclass
class Podman:
    """The podman command, with every container it starts labelled and removed at the end."""

    started: list[str] = field(default_factory=list)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
        )

    def check(self, *args: str, timeout: float = 120) -> str:
        """Its output; AssertionError with its stderr when it fails."""
        proc = self.run(*args, timeout=timeout)
        assert proc.returncode == 0, f"podman {' '.join(args)}: {proc.stderr.strip()}"
        return proc.stdout

    def once(self, *args: str, image: str = IMAGE) -> subprocess.CompletedProcess[str]:
        """``podman run --rm IMAGE ARGS``: the image's entrypoint with ARGS, to its end."""
        return self.run("run", "--rm", "--pull=never", "--network", "host", image, *args)

    def start(
        self, name: str, *options: str, image: str = IMAGE, args: tuple[str, ...] = ()
    ) -> Container:
        """``podman run -d`` on this namespace's network (the tests' own: tests/image/run).

        The image's health check stays, without the timer podman would ask systemd for:
        :meth:`Container.health` runs it."""
        self.started.append(name)
        self.check(
            "run",
            "-d",
            "--pull=never",
            "--name",
            name,
            "--label",
            f"{_LABEL}=1",
            "--network",
            "host",
            "--health-interval",
            "disable",
            *options,
            image,
            *args,
        )
        return Container(name, self)

    def remove_all(self) -> None:
        for name in reversed(self.started):
            self.run("rm", "--force", "--time", "0", name)
        self.started.clear()
