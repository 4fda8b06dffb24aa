"""End to end as in a Harbor installation: a real registry 2.8 run on the config.yml Harbor
generates for it (tests/data/harbor-registry-config.yml, its storage, Redis and ports pointed
here, its htpasswd auth left out), the warmer configured by that same file
(WARMER_REGISTRY_CONFIG, as deploy/harbor/docker-compose.harbor.yml does), and Harbor's
project webhooks posted to ``warmer webhook`` over HTTP as Harbor's jobservice posts them.

Harbor's GC ends by deleting every ``blobs::*`` and ``repository::*`` key: here the cache is
emptied after the push the same way, so that what the first pull finds is what the warmer
wrote from Harbor's push webhook, not the registry's own fill at push time. Then Harbor's
delete: the manifest deleted through the registry, the webhook evicts, nothing comes back.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tests.support.oci import Image, Index, layer, write_layout
from tests.support.redisdbs import DB
from tests.support.registry import Registry, delete, status
from tests.support.services import running_warmer
from worker.cli.demo.registry import DEBIAN_REGISTRY, http_process, tools_missing
from worker.cli.processes import free_ports, wait_until
from worker.registry.mediatypes import OCI_INDEX
from worker.state import StateStore

pytestmark = pytest.mark.e2e

DATA = Path(__file__).resolve().parents[1] / "data"
TOKEN = "harbor-e2e-token"
HOST = "harbor.example.com"
REPO = "library/app"
SHARED = layer("shared.txt", b"shared by both platforms")
INDEX = Index(
    [
        Image([SHARED, layer("x.txt", b"amd64 only")], "amd64", "amd"),
        Image([layer("x.txt", b"arm64 only"), SHARED], "arm64", "arm"),
    ]
)


@pytest.fixture
def dbs(redis_proc: Any) -> Iterator[dict[int, redis.Redis]]:
    clients = {
        db: redis.Redis(host=redis_proc.host, port=redis_proc.port, db=db)
        for db in (DB.HARBOR_CACHE, DB.HARBOR_STATE, DB.HARBOR_BROKER)
    }
    for c in clients.values():
        c.flushdb()
    yield clients
    for c in clients.values():
        c.flushdb()
        c.close()


def _harbor_config(path: Path, root: Path, redis_proc: Any, port: int, debug_port: int) -> None:
    """Harbor's rendered registry config with this machine's storage, Redis and ports."""
    config: dict[str, Any] = yaml.safe_load((DATA / "harbor-registry-config.yml").read_text())
    assert config["storage"]["cache"] == {"layerinfo": "redis"}  # Harbor's spelling
    config["storage"]["filesystem"]["rootdirectory"] = str(root)
    config["redis"] |= {"addr": f"{redis_proc.host}:{redis_proc.port}", "db": DB.HARBOR_CACHE}
    config["http"] = {
        "addr": f"127.0.0.1:{port}",
        "secret": "placeholder",
        "debug": {
            "addr": f"127.0.0.1:{debug_port}",
            "prometheus": {"enabled": True, "path": "/metrics"},
        },
    }
    del config["auth"]  # Harbor's htpasswd for its core: skopeo pushes without credentials
    path.write_text(yaml.safe_dump(config))


def _post(url: str, doc: dict[str, Any]) -> dict[str, Any]:
    """POST a webhook as Harbor's jobservice does: its Auth Header verbatim, its content type."""
    kind = "application/cloudevents+json" if "specversion" in doc else "application/json"
    request = urllib.request.Request(
        f"{url}/harbor",
        data=json.dumps(doc).encode(),
        method="POST",
        headers={
            "Content-Type": kind,
            "Authorization": f"Bearer {TOKEN}",
            "User-Agent": "Go-http-client/1.1",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 202
        result: dict[str, Any] = json.loads(answer.read())
        return result


def _payload(name: str, digest: str, tag: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DATA / f"harbor-{name}.json").read_text())
    data = doc["data" if "specversion" in doc else "event_data"]
    reference = f":{tag}" if tag else f"@{digest}"
    data["resources"] = [
        {"digest": digest, "tag": tag or digest, "resource_url": f"{HOST}/{REPO}{reference}"}
    ]
    data["repository"] |= {"name": "app", "namespace": "library", "repo_full_name": REPO}
    return doc


def test_harbor_webhooks_warm_a_registry_set_up_as_harbor_sets_it_up(
    redis_proc: Any, tmp_path: Path, dbs: dict[int, redis.Redis]
) -> None:
    if tools_missing():
        pytest.skip(f"needs {', '.join(tools_missing())}")
    root = tmp_path / "storage"
    root.mkdir()
    port, debug_port = free_ports(2)
    config = tmp_path / "config.yml"
    _harbor_config(config, root, redis_proc, port, debug_port)
    base = f"redis://{redis_proc.host}:{redis_proc.port}"
    env = {
        # Storage, cache Redis and version from Harbor's config alone.
        "WARMER_REGISTRY_CONFIG": str(config),
        "WARMER_BROKER_URL": f"{base}/{DB.HARBOR_BROKER}",
        "WARMER_STATE_URL": f"{base}/{DB.HARBOR_STATE}",
        "WARMER_SKIP_EVICTION_CHECK": "1",
        "WARMER_WEBHOOK_TOKEN": TOKEN,
        "WARMER_REGISTRY_HOSTS": HOST,
    }
    log = tmp_path / "registry.log"
    with (
        http_process(
            [DEBIAN_REGISTRY.path, "serve", str(config)],
            url=f"http://127.0.0.1:{port}/v2/",
            log=log,
            env=None,
            what="registry 2.8 on Harbor's config",
        ) as proc,
        running_warmer(env, tmp_path) as url,
    ):
        registry = Registry(f"127.0.0.1:{port}", f"127.0.0.1:{debug_port}", root, proc, log, config)
        registry.push(write_layout(tmp_path / "layout", INDEX), f"{REPO}:1.0", all_platforms=True)
        cache = dbs[DB.HARBOR_CACHE]
        assert cache.exists(f"repository::{REPO}::blobs")  # the registry's own push fill
        # ... which Harbor's GC deletes, with every blobs::* and repository::* key.
        cache.flushdb()

        index = INDEX.manifest.digest
        answer = _post(url, _payload("push-cloudevents", index, "1.0"))
        assert answer["accepted"] == 1, answer
        blobs = {b.digest for image in INDEX.images for b in (image.config, *image.layers)}
        children = {image.manifest.digest for image in INDEX.images}

        def warmed() -> bool:
            key = f"repository::{REPO}::blobs"
            members = {m.decode() if isinstance(m, bytes) else m for m in cache.smembers(key)}
            descriptors = all(cache.exists(f"blobs::{d}") for d in {index, *children})
            return blobs <= members and descriptors

        wait_until(warmed, timeout=60, what="Harbor's push webhook to warm every platform")

        before = registry.cache_counts()
        registry.pull(f"{REPO}:1.0", tmp_path / "pulled")
        after = registry.cache_counts()
        misses = after["Miss"] - before["Miss"]
        print(f"first pull through Harbor's registry after GC and its push webhook: {after}")
        assert misses == 0, (before, after)
        assert after["Hit"] > before["Hit"]

        # Harbor's delete: the manifest goes through the registry, then the webhook comes.
        assert delete(registry, f"{REPO}/manifests/{index}") == 202
        answer = _post(url, _payload("delete-default", index, "1.0"))
        assert answer["accepted"] == 1, answer
        state = StateStore(dbs[DB.HARBOR_STATE])
        wait_until(lambda: state.pending_count() == 0, timeout=30, what="the delete applied")
        assert state.dead_letter_count() == 0
        assert not cache.sismember(f"repository::{REPO}::blobs", index)
        assert not cache.exists(f"repository::{REPO}::blobs::{index}")
        assert status(registry, f"{REPO}/manifests/{index}", "HEAD", OCI_INDEX) == 404
