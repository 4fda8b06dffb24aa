"""docker-compose.yml's services, run here the way compose would run them, without Docker: for
tests/image/test_compose.py.

From ``docker-compose config`` (anchors merged, ``.env`` read, paths absolute), each warmer
service runs in a podman container of the built image with its own command, environment,
volumes (a named one is a folder), secrets (files mounted under ``/run/secrets/``, readable by
the image's user only), ``--add-host`` for every service name, and its health check as podman's
``--health-cmd``. What comes from Docker Hub is stood in for: the registry by a container of the
base image running the compose entrypoint (``deploy/registry/start.sh``) with a registry binary
mounted as ``registry``; the Redis servers by ``redis-server`` with the compose command on the
address of their service name; MinIO by moto, and the ``bucket`` service by boto3 making its
bucket. All share the test's network namespace (tests/image/run), where 127.0.0.0/8 is free.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import redis

from tests.image.podman import BASE, IMAGE, Container, Podman
from worker.cli.demo.registry import http_process
from worker.cli.processes import wait_until

__all__ = ["HOSTS", "UID", "Stack", "running_stack"]

#: The image's user, who reads the warmer's secrets.
UID = 10001
#: Where each service name points: the service's own address on this namespace's loopback.
HOSTS = {
    "registry": "127.0.0.1",
    "webhook": "127.0.0.1",
    "flower": "127.0.0.1",
    "redis-cache": "127.0.0.2",
    "broker": "127.0.0.3",
    "minio": "127.0.0.4",
}
#: The services made of the warmer's image, in compose's start order.
WARMERS = ("webhook", "worker", "beat", "flower")


def unescaped(value: Any) -> Any:
    """``docker-compose config`` prints a ``$`` as ``$$`` (for compose to read again)."""
    if isinstance(value, str):
        return value.replace("$$", "$")
    if isinstance(value, list):
        return [unescaped(v) for v in value]
    if isinstance(value, dict):
        return {k: unescaped(v) for k, v in value.items()}
    return value


@dataclass
class Stack:
    """The running services: containers by name, and what the test needs to reach the rest."""

    services: dict[str, Any]
    secrets: dict[str, str]  # name: value
    containers: dict[str, Container] = field(default_factory=dict)

    def redis(self, service: str, db: int) -> redis.Redis:
        return redis.Redis(host=HOSTS[service], port=6379, db=db)

    def stop_order(self) -> list[str]:
        """Dependents first, as ``docker compose down`` stops them."""
        return [
            n for n in ("flower", "beat", "worker", "webhook", "registry") if n in self.containers
        ]


def _secret_files(workdir: Path, names: list[str]) -> tuple[dict[str, str], dict[str, Path]]:
    folder = workdir / "secrets"
    folder.mkdir()
    values, paths = {}, {}
    for name in names:
        value = "registry" if name == "s3_access_key" else secrets.token_hex(16)
        path = folder / name
        path.write_text(value + "\n")  # as `openssl rand -hex 16 > file` writes it
        os.chown(path, UID, UID)
        path.chmod(0o400)
        values[name], paths[name] = value, path
    return values, paths


def _options(service: dict[str, Any], workdir: Path, files: dict[str, Path]) -> list[str]:
    """podman run's options for a compose service (not its image, entrypoint or command)."""
    options = [f"--add-host={name}:{address}" for name, address in HOSTS.items()]
    for name, value in (service.get("environment") or {}).items():
        options += ["-e", f"{name}={value}"]
    for volume in service.get("volumes") or []:
        source, target, *mode = volume.split(":")
        if not source.startswith("/"):  # a named volume: a folder of the test's
            named = workdir / "volumes" / source
            named.mkdir(parents=True, exist_ok=True)
            source = str(named)
        options += ["-v", ":".join([source, target, *mode])]
    for secret in service.get("secrets") or []:
        target = secret.get("target", secret["source"])
        options += ["-v", f"{files[secret['source']]}:/run/secrets/{target}:ro"]
    test = (service.get("healthcheck") or {}).get("test")
    if test and test[0] == "CMD":
        # podman 4.3 splits a ["CMD", ...] array at its spaces; without "CMD" it reads the array
        # as one (and runs it as CMD).
        options += ["--health-cmd", json.dumps(test[1:])]
    elif test and test != ["NONE"]:
        options += ["--health-cmd", json.dumps(test)]
    return options


@contextmanager
def _redis_service(name: str, service: dict[str, Any], workdir: Path) -> Iterator[None]:
    """redis-server with the service's command, on its address; its /data volume a folder."""
    data = workdir / "volumes" / name
    data.mkdir(parents=True, exist_ok=True)
    (program, *args) = service["command"]
    assert program == "redis-server", name
    args += ["--bind", HOSTS[name], "--port", "6379", "--dir", str(data)]
    log = (workdir / f"{name}.log").open("wb")
    proc = subprocess.Popen([program, *args], stdout=log, stderr=subprocess.STDOUT)
    try:
        # Its health check, `redis-cli ping`, from outside: this namespace is its network.
        assert service["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"], name
        client = redis.Redis(host=HOSTS[name], port=6379)

        def pong() -> bool:
            assert proc.poll() is None, (workdir / f"{name}.log").read_text()
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_until(pong, timeout=30, what=f"{name} healthy")
        yield
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@contextmanager
def _s3_store(stack: Stack, workdir: Path) -> Iterator[None]:
    """moto on minio's address; the bucket the `bucket` service makes, made with its keys."""
    endpoint = f"http://{HOSTS['minio']}:9000"
    env = {"PATH": os.environ.get("PATH", ""), "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    with http_process(
        [sys.executable, "-m", "moto.server", "-H", HOSTS["minio"], "-p", "9000"],
        url=endpoint,
        log=workdir / "moto.log",
        env=env,
        what="moto as minio",
    ):
        bucket = stack.services["bucket"]["entrypoint"][-1].rpartition("local/")[2]
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=stack.secrets["s3_access_key"],
            aws_secret_access_key=stack.secrets["s3_secret_key"],
        ).create_bucket(Bucket=bucket)
        yield


def _registry_up() -> bool:
    try:
        urllib.request.urlopen("http://127.0.0.1:5000/v2/", timeout=2).close()
        return True
    except OSError:
        return False


@contextmanager
def running_stack(
    podman: Podman, config: dict[str, Any], workdir: Path, registry_binary: str
) -> Iterator[Stack]:
    """Every service of ``config`` (resolved compose files) running and healthy."""
    services: dict[str, Any] = unescaped(config["services"])
    values, files = _secret_files(workdir, sorted(config.get("secrets", {})))
    stack = Stack(services, values)
    with ExitStack() as exits:
        for name in ("redis-cache", "broker"):
            exits.enter_context(_redis_service(name, services[name], workdir))
        if "minio" in services:
            exits.enter_context(_s3_store(stack, workdir))
        registry = services["registry"]
        stack.containers["registry"] = podman.start(
            "registry",
            *_options(registry, workdir, files),
            *("--entrypoint", json.dumps(registry["entrypoint"])),
            *("-v", f"{registry_binary}:/usr/local/bin/registry:ro"),
            image=BASE,
            args=tuple(registry["command"]),
        )
        # Its health check asks /v2/ with the registry image's wget, which the base image has not:
        # the same request, from outside.
        assert "http://127.0.0.1:5000/v2/" in registry["healthcheck"]["test"]
        wait_until(_registry_up, timeout=30, what="the registry container's /v2/")
        for name in WARMERS:
            service = services[name]
            assert service["image"] == IMAGE, name
            stack.containers[name] = podman.start(
                name, *_options(service, workdir, files), args=tuple(service["command"])
            )
        for name in ("webhook", "worker", "flower"):
            check = services[name]["healthcheck"]
            allowed = (
                _seconds(check.get("start_period", "0s"))
                + _seconds(check["interval"]) * (check["retries"])
            )
            stack.containers[name].wait_healthy(timeout=min(allowed, 120))
        yield stack


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    number = duration.rstrip("smh")
    return float(number) * units[duration[len(number) :]]
