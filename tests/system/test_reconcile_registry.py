"""End to end: after a delete and ``garbage-collect``, a registry answers from its stale cache;
``warmer reconcile`` makes it answer 404, and a first pull of a surviving image misses nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support import redisdbs
from tests.support.oci import Image, layer, write_layout
from tests.support.registry import delete, garbage_collect, head_blob, running_registry
from tests.support.services import run_warmer_json
from worker.cli.demo.registry import RegistryBinary

pytestmark = pytest.mark.e2e

DB = redisdbs.DB.RECONCILE_CACHE


def test_reconcile_ends_stale_answers_after_garbage_collect(
    redis_proc: Any, tmp_path: Path, binary: RegistryBinary
) -> None:
    url = f"redis://{redis_proc.host}:{redis_proc.port}/{DB}"
    cache = redis.Redis(host=redis_proc.host, port=redis_proc.port, db=DB)
    cache.flushdb()
    root = tmp_path / "storage"
    shared = layer("shared.txt", b"shared")
    doomed_layer = layer("doomed.txt", b"only in the deleted image")
    doomed = Image([shared, doomed_layer], label="doomed")
    kept = Image([shared, layer("kept.txt", b"kept")], label="kept")
    with running_registry(tmp_path / "r1", root=root, redis_url=url, binary=binary) as reg:
        reg.push(write_layout(tmp_path / "l1", doomed), "team/app:v1")
        reg.push(write_layout(tmp_path / "l2", kept), "keep/app:v1")
        reg.pull("team/app:v1", tmp_path / "p1")
        reg.pull("keep/app:v1", tmp_path / "p2")
        assert delete(reg, f"team/app/manifests/{doomed.manifest.digest}") == 202
        reg.process.terminate()
        reg.process.wait(10)
        garbage_collect(reg)  # the registry is stopped, as garbage-collect wants
    assert not (
        root
        / "docker/registry/v2/blobs/sha256"
        / doomed_layer.digest[7:9]
        / doomed_layer.digest[7:]
        / "data"
    ).exists()

    with running_registry(tmp_path / "r2", root=root, redis_url=url, binary=binary) as reg:
        # The problem: the deleted layer's data is gone, the registry says it is there.
        assert head_blob(reg, "team/app", doomed_layer.digest) == 200
        env = {
            **os.environ,
            "WARMER_REDIS_URL": url,
            "WARMER_STORAGE_ROOT": str(root),
            "WARMER_REGISTRY_VERSION": binary.version.value,
        }
        summary = run_warmer_json(["reconcile"], env)
        assert summary["evicted_members"] >= 1
        assert head_blob(reg, "team/app", doomed_layer.digest) == 404
        before = reg.cache_counts()
        reg.pull("keep/app:v1", tmp_path / "p3")
        after = reg.cache_counts()
    assert after["Miss"] - before["Miss"] == 0, (before, after)
    assert after["Hit"] > before["Hit"]
    cache.flushdb()
