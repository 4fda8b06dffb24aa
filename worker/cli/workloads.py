"""Image references read from Kubernetes YAML, as ``kubectl get -o yaml`` or ``helm template``
print it (``warmer check -f``, ``warmer warm -f``): every ``image:`` of every container, init
container and ephemeral container of Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets,
Jobs and CronJobs, in documents of any number (``---``), and in ``kind: List`` items.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import yaml

from worker.errors import ConfigError

__all__ = ["MAX_YAML_BYTES", "WORKLOAD_KINDS", "images_in_yaml", "read_images"]

#: Larger YAML is refused before it is parsed: a cluster's whole manifest set is far less.
MAX_YAML_BYTES: Final = 32 * 1024 * 1024
#: Where each kind keeps its pod spec.
WORKLOAD_KINDS: Final = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_CONTAINER_LISTS: Final = ("initContainers", "containers", "ephemeralContainers")


def read_images(source: str) -> list[str]:
    """The images of the YAML in file ``source`` (``-``: stdin), in order, repeats kept;
    ConfigError with one line when it cannot be read or is not YAML."""
    try:
        if source == "-":
            text = sys.stdin.buffer.read(MAX_YAML_BYTES + 1)
        else:
            with Path(source).open("rb") as f:
                text = f.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror or exc}") from None
    where = "stdin" if source == "-" else source
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{where} is over {MAX_YAML_BYTES} bytes")
    return images_in_yaml(text, where)


def images_in_yaml(text: bytes | str, where: str = "YAML") -> list[str]:
    """The images of every workload in ``text`` (multi-document YAML), in order."""
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(f"{where} is not YAML: {reason}"[:400]) from None
    return [image for doc in documents for image in _images(doc)]


def _images(doc: Any) -> Iterator[str]:
    if not isinstance(doc, dict):
        return
    if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
        for item in doc["items"]:
            yield from _images(item)
        return
    path = WORKLOAD_KINDS.get(str(doc.get("kind")))
    if path is None:
        return
    spec: Any = doc
    for key in path:
        spec = spec.get(key) if isinstance(spec, dict) else None
    if not isinstance(spec, dict):
        return
    for field in _CONTAINER_LISTS:
        containers = spec.get(field)
        if not isinstance(containers, list):
            continue
        for container in containers:
            image = container.get("image") if isinstance(container, dict) else None
            if isinstance(image, str) and image.strip():
                yield image.strip()
