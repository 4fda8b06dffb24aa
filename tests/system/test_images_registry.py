"""End to end with real registries (2.8 and 3.x): ``warmer check`` and ``warmer warm`` by
reference on a multi-platform image pushed with ``skopeo --all``.

Registry A takes the pushes (its own cache apart); registry B serves the same storage from the
cache the warmer fills. Cold before, warm after ``warmer warm``, then a first pull through B
misses nothing; cold again after the cache is flushed; stale once a layer is deleted through A
behind B's cache's back; and ``-f`` on a YAML file of every workload kind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.oci import Image, Index, layer, write_layout
from tests.support.redisdbs import DB, shared_env
from tests.support.redisdump import dump
from tests.support.registry import Registry, delete, running_registry
from worker.cli.demo.registry import RegistryBinary

pytestmark = pytest.mark.e2e

DATA = Path(__file__).resolve().parents[1] / "data" / "workloads.yaml"
SHARED = layer("shared.txt", b"shared by both platforms")
AMD = Image([SHARED, layer("x.txt", b"amd64 only")], "amd64", "amd")
ARM = Image([layer("x.txt", b"arm64 only"), SHARED], "arm64", "arm")


def _warmer(env: dict[str, str], *args: str, stdin: str | None = None) -> tuple[int, Any, str]:
    warmer = str(Path(sys.executable).with_name("warmer"))
    proc = subprocess.run(
        [warmer, *args, "--json"],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    return proc.returncode, json.loads(lines[-1]) if lines else None, proc.stderr


@pytest.fixture
def dbs(redis_proc: Any) -> Iterator[dict[int, redis.Redis]]:
    clients = {
        db: redis.Redis(host=redis_proc.host, port=redis_proc.port, db=db)
        for db in (DB.IMAGES_PUSH, DB.IMAGES_CACHE, DB.IMAGES_STATE)
    }
    for c in clients.values():
        c.flushdb()
    yield clients
    for c in clients.values():
        c.flushdb()
        c.close()


def _push(registry: Registry, tmp_path: Path, name: str, top: Image | Index) -> None:
    layout = write_layout(tmp_path / "layouts" / name.replace("/", "_").replace(":", "_"), top)
    registry.push(layout, name, all_platforms=isinstance(top, Index))


def test_check_and_warm_by_reference_against_a_real_registry(
    redis_proc: Any, tmp_path: Path, dbs: dict[int, redis.Redis], binary: RegistryBinary
) -> None:
    base = f"redis://{redis_proc.host}:{redis_proc.port}"
    root = tmp_path / "storage"
    with (
        running_registry(
            tmp_path / "a", root=root, redis_url=f"{base}/{DB.IMAGES_PUSH}", binary=binary
        ) as reg_a,
        running_registry(
            tmp_path / "b", root=root, redis_url=f"{base}/{DB.IMAGES_CACHE}", binary=binary
        ) as reg_b,
    ):
        _push(reg_a, tmp_path, "shop/api:2.4.1", Index([AMD, ARM]))
        env = {
            **shared_env(
                redis_proc, cache=DB.IMAGES_CACHE, state=DB.IMAGES_STATE, broker=DB.IMAGES_BROKER
            ),
            "WARMER_STORAGE_ROOT": str(root),
            "WARMER_REGISTRY_VERSION": binary.version.value,
            "WARMER_REGISTRY_HOSTS": reg_b.addr,
            "PATH": "/usr/bin:/bin",
        }
        ref = f"{reg_b.addr}/shop/api:2.4.1"

        status, cold, _ = _warmer(env, "check", ref)
        assert status == 1
        assert [p["platform"] for p in cold["images"][0]["platforms"]] == [
            "linux/amd64",
            "linux/arm64",
        ]
        # index, image manifest, config and two layers a platform: none in B's cache
        assert [(p["blobs"], p["cold"]) for p in cold["images"][0]["platforms"]] == [(5, 5)] * 2

        status, only_arm, err = _warmer(env, "warm", ref, "--platform", "linux/arm64")
        assert status == 0, err
        assert only_arm["images"][0]["platforms"] == ["linux/arm64"]
        assert _warmer(env, "check", ref, "--platform", "linux/arm64")[0] == 0
        assert _warmer(env, "check", ref, "--platform", "linux/amd64")[0] == 1

        status, _, err = _warmer(env, "warm", ref)
        assert status == 0, err
        status, warm, err = _warmer(env, "check", "shop/api:2.4.1")
        assert status == 0, (warm, err)
        assert warm["warm"] is True

        # What warm wrote is what a full pull needs: a first pull through B misses nothing.
        reg_b.pull("shop/api:2.4.1", tmp_path / "pulled")
        counts = reg_b.cache_counts()
        assert counts["Miss"] == 0, counts
        assert counts["Hit"] > 0

        # Cold again after the cache is flushed.
        dbs[DB.IMAGES_CACHE].flushdb()
        status, flushed, _ = _warmer(env, "check", ref)
        assert status == 1
        assert all(p["cold"] == p["blobs"] for p in flushed["images"][0]["platforms"])

        # Stale: a layer deleted through A, whose notification never reaches the warmer; B's
        # cache, warmed again, still holds it.
        assert _warmer(env, "warm", ref)[0] == 0
        only_amd = AMD.layers[1].digest
        assert dbs[DB.IMAGES_CACHE].sismember("repository::shop/api::blobs", only_amd)
        assert delete(reg_a, f"shop/api/blobs/{only_amd}") == 202
        status, stale, _ = _warmer(env, "check", ref)
        assert status == 1
        amd, arm = stale["images"][0]["platforms"]
        assert (amd["stale"], amd["not_warm"]) == (1, {only_amd: "stale"})
        assert arm["warm"] == arm["blobs"]


def test_warm_and_check_the_images_of_kubernetes_yaml(
    redis_proc: Any, tmp_path: Path, dbs: dict[int, redis.Redis], binary: RegistryBinary
) -> None:
    base = f"redis://{redis_proc.host}:{redis_proc.port}"
    root = tmp_path / "storage"
    with (
        running_registry(
            tmp_path / "a", root=root, redis_url=f"{base}/{DB.IMAGES_PUSH}", binary=binary
        ) as reg_a,
        running_registry(
            tmp_path / "b", root=root, redis_url=f"{base}/{DB.IMAGES_CACHE}", binary=binary
        ) as reg_b,
    ):
        # Every image of tests/data/workloads.yaml but docker.io's: pushed through A.
        text = DATA.read_text().replace("registry.example.com:5000", reg_b.addr)
        pushed: dict[str, str] = {}
        for name in (
            "shop/init:1",
            "shop/api:2.4.1",
            "tools/debug:1",
            "shop/web:1",
            "shop/db:3",
            "shop/rs:1",
            "shop/migrate:7",
            "shop/job:1",
            "shop/cron:1",
            "shop/listed:1",
        ):
            image: Image | Index = Image([layer("f", name.encode())], label=name)
            if name == "shop/api:2.4.1":
                image = Index([AMD, ARM])
            _push(reg_a, tmp_path, name, image)
            pushed[name] = image.manifest.digest
        text = text.replace("sha256:" + "a" * 64, pushed["shop/rs:1"])
        workloads = tmp_path / "workloads.yaml"
        workloads.write_text(text)
        env = {
            **shared_env(
                redis_proc, cache=DB.IMAGES_CACHE, state=DB.IMAGES_STATE, broker=DB.IMAGES_BROKER
            ),
            "WARMER_STORAGE_ROOT": str(root),
            "WARMER_REGISTRY_VERSION": binary.version.value,
            "WARMER_REGISTRY_HOSTS": reg_b.addr,
            "PATH": "/usr/bin:/bin",
        }
        status, cold, _ = _warmer(env, "check", "-f", str(workloads))
        assert status == 1
        assert (len(cold["images"]), cold["skipped"]) == (10, 1)
        assert not any(i["warm"] for i in cold["images"])

        status, warmed, err = _warmer(env, "warm", "-f", "-", stdin=text)
        assert status == 0, err
        assert (len(warmed["images"]), warmed["skipped"]) == (10, 1)
        assert "docker.io/library/busybox:1.36" in err  # the skip is logged

        status, warm, err = _warmer(env, "check", "-f", str(workloads))
        assert status == 0, (warm, err)
        before = reg_b.cache_counts()
        for name in pushed:
            reg_b.pull(name, tmp_path / "pulled" / name.replace("/", "_").replace(":", "_"))
        after = reg_b.cache_counts()
        assert after["Miss"] == before["Miss"], (before, after)
        assert dump(dbs[DB.IMAGES_CACHE])  # B reads what the warmer wrote
