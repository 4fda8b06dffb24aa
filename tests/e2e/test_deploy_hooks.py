"""The README's deploy hooks, run as written: the GitHub Actions step (bash -eo pipefail, as
Actions runs it) and the Argo CD PreSync Job's script (/bin/sh), against ``warmer webhook`` and
``warmer worker`` processes. Each ends once its images are warm, and holds (the Job) or fails
past its deadline (the step) while an image is not."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from bench.layout import LayoutWriter
from tests.support.redisdbs import DB, shared_env
from tests.support.services import running_warmer
from worker.cache import BlobDescriptorCache
from worker.core.imagecheck import check_image
from worker.registry.reference import image_reference
from worker.storage.filesystem import FilesystemStore

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "deploy-hook-token"
HOST = "registry.example.com:5000"
IMAGES = f"{HOST}/shop/api:2.4.1 {HOST}/shop/web:1.9.0"


def _block(name: str) -> Any:
    text = (ROOT / "README.md").read_text()
    found = re.search(
        rf"<!-- deploy-hook-{name}:start -->\n```yaml\n(.*?)```\n<!-- deploy-hook-{name}:end -->",
        text,
        re.S,
    )
    assert found, f"README.md has no deploy-hook-{name} block"
    return yaml.safe_load(found[1])


@pytest.fixture
def warmer(redis_proc: Any, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    dbs = (DB.IMAGES_CACHE, DB.IMAGES_STATE, DB.IMAGES_BROKER)
    clients = [redis.Redis(host=redis_proc.host, port=redis_proc.port, db=db) for db in dbs]
    for c in clients:
        c.flushdb()
    layout = LayoutWriter(tmp_path / "storage")
    amd, _ = layout.image("shop/api", "amd64", b"shared", b"amd64 layer")
    arm, _ = layout.image("shop/api", "arm64", b"shared", b"arm64 layer")
    layout.index("shop/api", "2.4.1", ("linux/amd64", amd), ("linux/arm64", arm))
    layout.image("shop/web", "1.9.0", b"web")
    env = {
        **os.environ,
        **shared_env(
            redis_proc, cache=DB.IMAGES_CACHE, state=DB.IMAGES_STATE, broker=DB.IMAGES_BROKER
        ),
        "WARMER_STORAGE_ROOT": str(layout.store.root),
        "WARMER_WEBHOOK_TOKEN": TOKEN,
        "WARMER_REGISTRY_HOSTS": HOST,
    }
    with running_warmer(env, tmp_path) as url:
        yield url, layout.store.root
    for c in clients:
        c.flushdb()
        c.close()


def _warm(redis_proc: Any, root: Path, text: str) -> bool:
    cache = BlobDescriptorCache(
        redis.Redis(host=redis_proc.host, port=redis_proc.port, db=DB.IMAGES_CACHE)
    )
    return check_image(cache, FilesystemStore(root), image_reference(text, {HOST})).warm


def test_the_ci_step_waits_until_warm_and_fails_past_its_deadline(
    warmer: tuple[str, Path], redis_proc: Any
) -> None:
    url, root = warmer
    (step,) = _block("ci")
    assert "${{ secrets.WARMER_WEBHOOK_TOKEN }}" in step["env"]["WARMER_TOKEN"]
    env = {"PATH": os.environ["PATH"], "WARMER_URL": url, "WARMER_TOKEN": TOKEN, "DEADLINE": "60"}
    assert not _warm(redis_proc, root, f"{HOST}/shop/api:2.4.1")
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        env={**env, "IMAGES": IMAGES},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert _warm(redis_proc, root, f"{HOST}/shop/api:2.4.1")
    assert _warm(redis_proc, root, "shop/web:1.9.0")

    never = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        env={**env, "IMAGES": f"{HOST}/shop/api:9.9.9", "DEADLINE": "3"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert never.returncode == 1
    assert f"{HOST}/shop/api:9.9.9 is not warm after 3 s" in never.stderr


def test_the_argocd_presync_job_holds_until_warm(warmer: tuple[str, Path], redis_proc: Any) -> None:
    url, root = warmer
    job = _block("argocd")
    assert job["kind"] == "Job"
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    assert job["spec"]["activeDeadlineSeconds"] > 0
    (container,) = job["spec"]["template"]["spec"]["containers"]
    values = {e["name"]: e.get("value") for e in container["env"]}
    assert values["IMAGES"] == IMAGES
    env = {"PATH": os.environ["PATH"], "WARMER_URL": url, "WARMER_TOKEN": TOKEN}
    script = [*container["command"], *container["args"]]

    # An image that never becomes warm holds the sync until the Job's deadline kills it.
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run(
            script,
            env={**env, "IMAGES": f"{HOST}/shop/api:9.9.9"},
            capture_output=True,
            timeout=5,
            check=False,
        )
    done = subprocess.run(
        script,
        env={**env, "IMAGES": values["IMAGES"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '{"tasks":[' in done.stdout  # POST /warm's answer
    assert all(f"{image} is warm" in done.stdout for image in IMAGES.split())
    assert _warm(redis_proc, root, f"{HOST}/shop/api:2.4.1")

    # A wrong token stops the Job at once.
    refused = subprocess.run(
        script,
        env={**env, "IMAGES": IMAGES, "WARMER_TOKEN": "wrong"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert refused.returncode == 1
    assert "401" in refused.stderr
