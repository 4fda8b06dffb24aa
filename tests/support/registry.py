"""A real registry for the end-to-end tests: the demo's (``worker.demo.registry``), plus what
only the tests do with it: copy within it, delete, HEAD a blob, garbage-collect."""

from __future__ import annotations

import urllib.error
import urllib.request

from worker.demo.registry import (
    REGISTRY_BIN,
    Registry,
    free_port,
    run,
    running_registry,
    skopeo_copy,
    tools_missing,
    wait_for,
)

__all__ = [
    "Registry",
    "copy",
    "delete",
    "free_port",
    "garbage_collect",
    "head_blob",
    "running_registry",
    "tools_missing",
    "wait_for",
]


def garbage_collect(registry: Registry) -> None:
    """``docker-registry garbage-collect`` on the registry's config (storage)."""
    run([REGISTRY_BIN, "garbage-collect", str(registry.config)])


def copy(registry: Registry, source: str, destination: str) -> None:
    """``skopeo copy`` within the registry (a cross-repository mount for shared blobs)."""
    skopeo_copy(
        f"docker://{registry.addr}/{source}",
        f"docker://{registry.addr}/{destination}",
        all_platforms=True,
    )


def _status(registry: Registry, path: str, method: str) -> int:
    req = urllib.request.Request(f"http://{registry.addr}/v2/{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            status: int = resp.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def delete(registry: Registry, path: str) -> int:
    """HTTP status of ``DELETE /v2/<path>``."""
    return _status(registry, path, "DELETE")


def head_blob(registry: Registry, repository: str, digest: str) -> int:
    """HTTP status of ``HEAD /v2/<repository>/blobs/<digest>``."""
    return _status(registry, f"{repository}/blobs/{digest}", "HEAD")
