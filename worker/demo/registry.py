"""A real registry (Debian's ``docker-registry``) on free ports, driven by ``skopeo``: for the
demo and the end-to-end tests."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from worker.processes import free_port

__all__ = ["Registry", "free_port", "running_registry", "tools_missing", "wait_for"]

REGISTRY_BIN = "docker-registry"
SKOPEO_BIN = "skopeo"


def wait_for(condition: object, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``condition()`` until it is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Registry:
    """A running registry: its address, debug address and storage root."""

    addr: str
    debug_addr: str
    root: Path
    process: subprocess.Popen[bytes]
    log: Path
    config: Path

    def garbage_collect(self) -> None:
        """``docker-registry garbage-collect`` on this registry's config (storage)."""
        _run([REGISTRY_BIN, "garbage-collect", str(self.config)])

    def push(self, layout: Path, name: str, *, all_platforms: bool = False) -> None:
        """``skopeo copy`` an OCI layout (``DIR:TAG``) to ``name`` (``repo:tag``)."""
        args = [SKOPEO_BIN, "copy", "--quiet", "--dest-tls-verify=false"]
        if all_platforms:
            args.append("--all")
        _run([*args, f"oci:{layout}", f"docker://{self.addr}/{name}"])

    def pull(self, name: str, into: Path) -> None:
        """``skopeo copy --all`` ``name`` from the registry to an OCI layout (a full pull)."""
        into.parent.mkdir(parents=True, exist_ok=True)
        _run(
            [
                SKOPEO_BIN,
                "copy",
                "--quiet",
                "--all",
                "--src-tls-verify=false",
                f"docker://{self.addr}/{name}",
                f"oci:{into}:x",
            ]
        )

    def cache_counts(self) -> dict[str, int]:
        """``registry_storage_cache_total`` by type (Request, Hit, Miss) from the debug port."""
        text = urllib.request.urlopen(f"http://{self.debug_addr}/metrics", timeout=5).read()
        counts = {"Request": 0, "Hit": 0, "Miss": 0}
        pattern = r'^registry_storage_cache_total\{type="(\w+)"\} (\S+)$'
        for kind, value in re.findall(pattern, text.decode(), re.MULTILINE):
            counts[kind] = int(float(value))
        return counts

    def copy(self, source: str, destination: str) -> None:
        """``skopeo copy`` within the registry (a cross-repository mount for shared blobs)."""
        _run(
            [
                SKOPEO_BIN,
                "copy",
                "--quiet",
                "--all",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                f"docker://{self.addr}/{source}",
                f"docker://{self.addr}/{destination}",
            ]
        )

    def delete(self, path: str) -> int:
        """HTTP status of ``DELETE /v2/<path>``."""
        req = urllib.request.Request(f"http://{self.addr}/v2/{path}", method="DELETE")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                status: int = resp.status
                return status
        except urllib.error.HTTPError as exc:
            return exc.code

    def head_blob(self, repository: str, digest: str) -> int:
        """HTTP status of ``HEAD /v2/<repository>/blobs/<digest>``."""
        req = urllib.request.Request(
            f"http://{self.addr}/v2/{repository}/blobs/{digest}", method="HEAD"
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                status: int = resp.status
                return status
        except urllib.error.HTTPError as exc:
            return exc.code


def _run(args: list[str]) -> None:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")


def tools_missing() -> list[str]:
    """The end-to-end tools not on PATH."""
    return [b for b in (REGISTRY_BIN, SKOPEO_BIN) if shutil.which(b) is None]


@contextmanager
def running_registry(
    workdir: Path,
    *,
    root: Path,
    redis_port: int,
    redis_db: int,
    notify_url: str | None = None,
    token: str = "test-token",
) -> Iterator[Registry]:
    """Start ``docker-registry serve`` on free ports with a Redis blob-descriptor cache."""
    port, debug_port = free_port(), free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    notifications = ""
    if notify_url:
        notifications = f"""
notifications:
  endpoints:
    - name: warmer
      url: {notify_url}
      headers: {{Authorization: [Bearer {token}]}}
      timeout: 2s
      threshold: 5
      backoff: 1s
"""
    config = workdir / f"config-{port}.yml"
    config.write_text(f"""version: 0.1
log: {{level: info}}
storage:
  cache: {{blobdescriptor: redis}}
  filesystem: {{rootdirectory: {root}}}
  delete: {{enabled: true}}
redis: {{addr: "127.0.0.1:{redis_port}", db: {redis_db}}}
http:
  addr: 127.0.0.1:{port}
  debug: {{addr: "127.0.0.1:{debug_port}", prometheus: {{enabled: true, path: /metrics}}}}
{notifications}""")
    log = workdir / f"registry-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=out, stderr=out)
    reg = Registry(f"127.0.0.1:{port}", f"127.0.0.1:{debug_port}", root, proc, log, config)
    try:
        wait_for(
            lambda: _answers(f"http://{reg.addr}/v2/") or proc.poll() is not None,
            what=f"registry on {reg.addr}",
        )
        if proc.poll() is not None:
            raise RuntimeError(f"registry exited: {log.read_text()[-2000:]}")
        yield reg
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True
