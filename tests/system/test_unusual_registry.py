"""End to end, the pushes the warmer once got wrong: Windows-style manifests (foreign and
non-distributable layers with urls, which the registry takes without holding them) and
repositories named ``manifests`` or after a host. Registry A notifies the warmer, which fills
the Redis of replica B; the first pull through B misses nothing, and nothing is dead-lettered.

The pushes go over the registry's HTTP API (skopeo cannot push a manifest whose layers are not
all there). Debian's 2.8.2 stores no name with a ":port" host (its storage driver refuses ":" in
a path, 500 on upload): tests/unit/test_reference.py covers those names.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.redisdbs import DB, shared_env
from tests.support.registry import Registry, running_registry
from tests.support.services import running_warmer
from worker.cli.demo.registry import RegistryBinary
from worker.cli.processes import wait_until
from worker.registry.mediatypes import (
    DOCKER_FOREIGN_LAYER,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA2,
    MANIFEST_TYPES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
)
from worker.state import StateStore

pytestmark = pytest.mark.e2e

TOKEN = "e2e-unusual-token"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
# 2.8 takes a manifest with urls only when they match an allow rule.
ALLOW_URLS = "validation:\n  manifests:\n    urls:\n      allow: ['^https://']\n"
NAMES = ("team/manifests", "manifests/app", "localhost/app", "registry.example.com/team/app")


def _request(method: str, url: str, data: bytes | None = None, **headers: str) -> Any:
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    return urllib.request.urlopen(req, timeout=10)


class Pusher:
    """Pushes blobs and manifests to one registry over its HTTP API."""

    def __init__(self, registry: Registry) -> None:
        self.base = f"http://{registry.addr}/v2"

    def blob(self, repository: str, data: bytes, media_type: str) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with _request("POST", f"{self.base}/{repository}/blobs/uploads/") as resp:
            location = resp.headers["Location"]
        sep = "&" if "?" in location else "?"
        put = f"{location}{sep}digest={digest}"
        _request("PUT", put, data, **{"Content-Type": "application/octet-stream"}).close()
        return {"mediaType": media_type, "size": len(data), "digest": digest}

    def manifest(self, repository: str, tag: str, doc: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(doc).encode()
        url = f"{self.base}/{repository}/manifests/{tag}"
        _request("PUT", url, body, **{"Content-Type": doc["mediaType"]}).close()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        return {"mediaType": doc["mediaType"], "size": len(body), "digest": digest}


def _foreign(data: bytes, media_type: str, elsewhere: set[str]) -> dict[str, Any]:
    """A layer only named, with urls to fetch it from: never pushed (added to ``elsewhere``)."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    elsewhere.add(digest)
    url = f"https://mcr.example/{digest}"
    return {"mediaType": media_type, "size": len(data), "digest": digest, "urls": [url]}


def _pull(registry: Registry, repository: str, reference: str, elsewhere: set[str]) -> None:
    """What a client's full pull asks the registry for: manifests, then their blobs, but for
    the layers in ``elsewhere``, which it fetches from their urls (the registry has none)."""
    base = f"http://{registry.addr}/v2/{repository}"
    accept = ", ".join(sorted(MANIFEST_TYPES))
    with _request("GET", f"{base}/manifests/{reference}", Accept=accept) as resp:
        doc = json.load(resp)
    for child in doc.get("manifests", []):
        _pull(registry, repository, child["digest"], elsewhere)
    for blob in [doc["config"], *doc["layers"]] if "config" in doc else []:
        if blob["digest"] not in elsewhere:
            _request("GET", f"{base}/blobs/{blob['digest']}").close()


@pytest.fixture
def dbs(redis_proc: Any) -> Iterator[dict[int, redis.Redis]]:
    clients: dict[int, redis.Redis] = {
        db: redis.Redis(host=redis_proc.host, port=redis_proc.port, db=db)
        for db in (DB.UNUSUAL_ORIGIN, DB.UNUSUAL_REPLICA, DB.UNUSUAL_STATE, DB.UNUSUAL_BROKER)
    }
    for c in clients.values():
        c.flushdb()
    yield clients
    for c in clients.values():
        c.flushdb()
        c.close()


@pytest.fixture
def warmer(
    redis_proc: Any, tmp_path: Path, dbs: dict[int, redis.Redis], binary: RegistryBinary
) -> Iterator[str]:
    """``warmer webhook`` and ``warmer worker`` filling the replica's DB; yields the URL."""
    env = {
        **shared_env(
            redis_proc,
            cache=DB.UNUSUAL_REPLICA,
            state=DB.UNUSUAL_STATE,
            broker=DB.UNUSUAL_BROKER,
        ),
        "WARMER_STORAGE_ROOT": str(tmp_path / "storage"),
        "WARMER_WEBHOOK_TOKEN": TOKEN,
        "WARMER_REGISTRY_VERSION": binary.version.value,
    }
    (tmp_path / "storage").mkdir()
    with running_warmer(env, tmp_path) as url:
        yield url


def test_windows_images_and_unusual_names_miss_nothing_on_a_replica(
    warmer: str,
    redis_proc: Any,
    tmp_path: Path,
    dbs: dict[int, redis.Redis],
    binary: RegistryBinary,
) -> None:
    root = tmp_path / "storage"
    base = f"redis://{redis_proc.host}:{redis_proc.port}"
    replica = dbs[DB.UNUSUAL_REPLICA]
    tags: list[tuple[str, str]] = []
    manifests: list[str] = []
    elsewhere: set[str] = set()
    with running_registry(
        tmp_path / "a",
        root=root,
        redis_url=f"{base}/{DB.UNUSUAL_ORIGIN}",
        notify_url=f"{warmer}/events",
        token=TOKEN,
        extra_config=ALLOW_URLS,
        binary=binary,
    ) as origin:
        push = Pusher(origin)
        # Windows: a Docker image on a foreign base layer (one of two pushed after all), an
        # OCI image on a non-distributable one, and the list that names both.
        win = "win/app"
        docker_image = push.manifest(
            win,
            "docker",
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_SCHEMA2,
                "config": push.blob(win, b'{"os":"windows","d":1}', DOCKER_CONFIG),
                "layers": [
                    _foreign(b"windows base layer", DOCKER_FOREIGN_LAYER, elsewhere),
                    {
                        **push.blob(win, b"foreign, pushed too", DOCKER_FOREIGN_LAYER),
                        "urls": ["https://mcr.example/pushed"],
                    },
                    push.blob(win, b"the app's own layer", DOCKER_LAYER),
                ],
            },
        )
        oci_image = push.manifest(
            win,
            "oci",
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": push.blob(win, b'{"os":"windows","o":1}', OCI_CONFIG),
                "layers": [
                    _foreign(b"non-distributable base", OCI_NONDIST, elsewhere),
                    push.blob(win, b"an OCI layer of its own", OCI_LAYER),
                ],
            },
        )
        listed = push.manifest(
            win,
            "v1",
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST_LIST,
                "manifests": [
                    {**docker_image, "platform": {"architecture": "amd64", "os": "windows"}},
                    {**oci_image, "platform": {"architecture": "arm64", "os": "windows"}},
                ],
            },
        )
        tags += [(win, "v1"), (win, "docker"), (win, "oci")]
        manifests += [d["digest"] for d in (docker_image, oci_image, listed)]
        # Repositories named "manifests" or after a host: an OCI image and an index each.
        for n, name in enumerate(NAMES):
            image = push.manifest(
                name,
                "img",
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": push.blob(name, json.dumps({"n": n}).encode(), OCI_CONFIG),
                    "layers": [push.blob(name, f"layer of {name}".encode(), OCI_LAYER)],
                },
            )
            index = push.manifest(
                name,
                "v1",
                {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [image]},
            )
            tags += [(name, "v1"), (name, "img")]
            manifests += [image["digest"], index["digest"]]

        # Everything notified is settled: each manifest's descriptor is the last thing its
        # push writes, and the registry sends events in order.
        state = StateStore(dbs[DB.UNUSUAL_STATE])
        wait_until(
            lambda: (
                all(replica.exists(f"blobs::{d}") for d in manifests) and state.pending_count() == 0
            ),
            timeout=90,
            what="every manifest pushed to be warm on the replica",
        )
        assert state.dead_letter_count() == 0, state.dead_letters()

    with running_registry(
        tmp_path / "b",
        root=root,
        redis_url=f"{base}/{DB.UNUSUAL_REPLICA}",
        extra_config=ALLOW_URLS,
        binary=binary,
    ) as replica_registry:
        for repository, tag in tags:
            _pull(replica_registry, repository, tag, elsewhere)
        counts = replica_registry.cache_counts()
    print(f"first pull through the replica the warmer filled: {counts}")
    assert counts["Miss"] == 0, counts
    assert counts["Hit"] > 0
