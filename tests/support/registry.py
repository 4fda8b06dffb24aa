"""A real registry for the system and e2e tests: the demo's (``worker.cli.demo.registry``),
plus what only the tests do with it: which registries there are, copy within one, delete, HEAD
a blob, garbage-collect.

Debian's ``docker-registry`` (2.8.2) is on PATH. The 3.x registry is a static binary that the
project does not ship: its path comes from ``WARMER_TEST_REGISTRY_V3`` (``.ci/run`` sets it to
``../shared/registry-v3/registry`` when that file exists). Without it the 3.x scenarios skip,
and under ``WARMER_REQUIRE_E2E=1`` they fail.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

import pytest

from worker.cli.demo.registry import (
    DEBIAN_REGISTRY,
    Registry,
    RegistryBinary,
    free_port,
    run,
    running_registry,
    skopeo_copy,
    tools_missing,
)
from worker.registry.versions import RegistryVersion

__all__ = [
    "REGISTRY_BINARIES",
    "V3_VARIABLE",
    "Registry",
    "copy",
    "delete",
    "free_port",
    "garbage_collect",
    "head_blob",
    "registry_binary",
    "running_registry",
    "status",
    "tools_missing",
]


#: Where the 3.x registry binary's path comes from.
V3_VARIABLE = "WARMER_TEST_REGISTRY_V3"
#: The registries every scenario runs against, by name (test ids).
REGISTRY_BINARIES = ("registry-2.8", "registry-3")


def registry_binary(name: str) -> RegistryBinary:
    """The registry of that name; skip (or fail under WARMER_REQUIRE_E2E=1) when it is absent."""
    if name == "registry-2.8":
        return DEBIAN_REGISTRY
    path = os.environ.get(V3_VARIABLE, "")
    if path and os.access(path, os.X_OK):
        return RegistryBinary(path, RegistryVersion.V3)
    reason = (
        f"registry 3.x scenarios need {V3_VARIABLE}=/path/to/registry (a v3.1 binary); "
        f"got {path or 'nothing'}"
    )
    if os.environ.get("WARMER_REQUIRE_E2E") == "1":
        pytest.fail(f"WARMER_REQUIRE_E2E=1 but {reason}")
    pytest.skip(reason)


def garbage_collect(registry: Registry) -> None:
    """``REGISTRY garbage-collect`` on the registry's config (storage)."""
    run([registry.binary.path, "garbage-collect", str(registry.config)])


def copy(registry: Registry, source: str, destination: str) -> None:
    """``skopeo copy`` within the registry (a cross-repository mount for shared blobs)."""
    skopeo_copy(
        f"docker://{registry.addr}/{source}",
        f"docker://{registry.addr}/{destination}",
        all_platforms=True,
    )


def status(registry: Registry, path: str, method: str, accept: str | None = None) -> int:
    """The HTTP status of ``METHOD /v2/<path>`` (``accept``: the Accept header, for manifests)."""
    headers = {"Accept": accept} if accept else {}
    req = urllib.request.Request(
        f"http://{registry.addr}/v2/{path}", method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            status: int = resp.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def delete(registry: Registry, path: str) -> int:
    """HTTP status of ``DELETE /v2/<path>``."""
    return status(registry, path, "DELETE")


def head_blob(registry: Registry, repository: str, digest: str) -> int:
    """HTTP status of ``HEAD /v2/<repository>/blobs/<digest>``."""
    return status(registry, f"{repository}/blobs/{digest}", "HEAD")
