"""A real registry on free ports, driven by ``skopeo``: for the demo (Debian's
``docker-registry``, 2.8) and the end-to-end tests (that one, and a 3.x binary), which add what
only they need in ``tests/support/registry.py``."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from worker.cli.processes import free_port, free_ports, wait_until
from worker.config.registryfile import registry_config
from worker.config.storageurl import StorageTarget
from worker.registry.versions import RegistryVersion

__all__ = [
    "DEBIAN_REGISTRY",
    "Registry",
    "RegistryBinary",
    "free_port",
    "http_process",
    "run",
    "running_registry",
    "skopeo_copy",
    "tools_missing",
]

REGISTRY_BIN = "docker-registry"
SKOPEO_BIN = "skopeo"


@dataclass(frozen=True)
class RegistryBinary:
    """A registry program and the generation it is (its config and metrics differ)."""

    path: str
    version: RegistryVersion


#: Debian's package: distribution 2.8.2.
DEBIAN_REGISTRY = RegistryBinary(REGISTRY_BIN, RegistryVersion.V2)


@dataclass
class Registry:
    """A running registry: its address, debug address and storage root."""

    addr: str
    debug_addr: str
    root: Path
    process: subprocess.Popen[bytes]
    log: Path
    config: Path
    binary: RegistryBinary = DEBIAN_REGISTRY

    def push(self, layout: Path, name: str, *, all_platforms: bool = False) -> None:
        """``skopeo copy`` an OCI layout (``DIR:TAG``) to ``name`` (``repo:tag``)."""
        skopeo_copy(f"oci:{layout}", f"docker://{self.addr}/{name}", all_platforms=all_platforms)

    def pull(self, name: str, into: Path) -> None:
        """``skopeo copy --all`` ``name`` from the registry to an OCI layout (a full pull)."""
        into.parent.mkdir(parents=True, exist_ok=True)
        skopeo_copy(f"docker://{self.addr}/{name}", f"oci:{into}:x", all_platforms=True)

    def cache_counts(self) -> dict[str, int]:
        """The registry's own cache figures (Request, Hit, Miss) from its debug port.

        2.x counts ``registry_storage_cache_total{type=...}``; 3.x counts requests and hits
        (``registry_storage_cache_requests_total``, ``..._hits_total``): misses are the rest.
        """
        text = urllib.request.urlopen(f"http://{self.debug_addr}/metrics", timeout=5).read()
        text = text.decode()
        counts = {"Request": 0, "Hit": 0, "Miss": 0}
        pattern = r'^registry_storage_cache_total\{type="(\w+)"\} (\S+)$'
        for kind, value in re.findall(pattern, text, re.MULTILINE):
            counts[kind] = int(float(value))
        for kind, name in (("Request", "requests"), ("Hit", "hits")):
            found = re.search(rf"^registry_storage_cache_{name}_total (\S+)$", text, re.MULTILINE)
            if found:
                counts[kind] = int(float(found[1]))
                counts["Miss"] = counts["Request"] - counts["Hit"]
        return counts


def skopeo_copy(source: str, destination: str, *, all_platforms: bool = False) -> None:
    """``skopeo copy`` between two transports (``oci:DIR:TAG``, ``docker://HOST/NAME``), over
    plain HTTP; ``all_platforms`` copies every image of an index."""
    args = [SKOPEO_BIN, "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false"]
    if all_platforms:
        args.append("--all")
    run([*args, source, destination])


def run(args: list[str]) -> None:
    """Run a tool; raise RuntimeError with its stderr when it fails."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")


def tools_missing() -> list[str]:
    """The end-to-end tools (Debian's registry, skopeo) not on PATH."""
    return [b for b in (REGISTRY_BIN, SKOPEO_BIN) if shutil.which(b) is None]


@contextmanager
def running_registry(
    workdir: Path,
    *,
    root: Path,
    redis_url: str,
    notify_url: str | None = None,
    token: str = "test-token",
    binary: RegistryBinary = DEBIAN_REGISTRY,
    environment: dict[str, str] | None = None,
    extra_config: str = "",
    storage: StorageTarget | None = None,
) -> Iterator[Registry]:
    """Start ``BINARY serve`` on free ports with a Redis blob-descriptor cache at ``redis_url``;
    ``extra_config`` is more top-level YAML (``validation:`` for manifests with urls); an
    ``s3`` ``storage`` stores there instead of the filesystem at ``root``."""
    port, debug_port = free_ports(2)
    workdir.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    config = workdir / f"config-{port}.yml"
    config.write_text(
        f"""version: 0.1
log: {{level: info}}
http:
  addr: 127.0.0.1:{port}
  debug: {{addr: "127.0.0.1:{debug_port}", prometheus: {{enabled: true, path: /metrics}}}}
"""
        + registry_config(
            version=binary.version,
            root=root,
            redis_url=redis_url,
            notify_url=notify_url,
            token=token,
            delete=True,
            storage=storage,
        )
        + "\n"
        + extra_config
    )
    log = workdir / f"registry-{port}.log"
    with http_process(
        [binary.path, "serve", str(config)],
        url=f"http://127.0.0.1:{port}/v2/",
        log=log,
        env=environment,
        what=f"registry on 127.0.0.1:{port}",
    ) as proc:
        yield Registry(
            f"127.0.0.1:{port}", f"127.0.0.1:{debug_port}", root, proc, log, config, binary
        )


@contextmanager
def http_process(
    args: list[str], *, url: str, log: Path, env: dict[str, str] | None, what: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server; yield it once ``url`` answers HTTP (any status); stop it afterwards
    (SIGTERM, then SIGKILL). Its output goes to ``log``, whose end a start failure shows."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=out, env=env)
    try:
        wait_until(lambda: _answers(url) or proc.poll() is not None, timeout=20, what=what)
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-2000:]}")
        yield proc
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
