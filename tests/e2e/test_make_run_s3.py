"""End to end on S3: ``make run REGISTRY_CONFIG=...`` as the README gives it warms a replica
from the bucket its registry's config.yml names, and leaves nothing running after Ctrl-C
(the corpus: tests/support/s3corpus.py; the warmer's commands over it:
tests/system/test_s3_registry.py)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bench.s3_endpoint import aws_environment
from tests.support.redisdump import dump
from tests.support.registry import free_port
from tests.support.s3corpus import Bucket, pushed_bucket, replica_config, warm_db_client
from worker.cli.demo.registry import RegistryBinary
from worker.cli.processes import wait_until

pytestmark = pytest.mark.e2e
REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bucket(
    redis_proc: Any,
    s3_endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
    binary: RegistryBinary,
) -> Iterator[Bucket]:
    with pushed_bucket(redis_proc, s3_endpoint, tmp_path_factory.mktemp("s3run"), binary) as b:
        yield b


@pytest.fixture
def warm_db(bucket: Bucket) -> Iterator[redis.Redis]:
    with warm_db_client(bucket) as c:
        yield c


def test_make_run_with_the_registrys_config_warms_from_the_bucket(
    bucket: Bucket, warm_db: redis.Redis, tmp_path: Path
) -> None:
    # `make run REGISTRY_CONFIG=...` as the README gives it: storage, keys, endpoint, cache
    # Redis and version from the replica's config.yml alone; broker and state where nothing
    # answers, so `up --dev` brings its own. Beat, starting on an empty cache, re-warms it.
    dead = f"redis://127.0.0.1:{free_port()}"
    env = aws_environment("http://unused.invalid") | {
        "WARMER_BROKER_URL": f"{dead}/1",
        "WARMER_STATE_URL": f"{dead}/2",
    }
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3"):
        env.pop(name)
    config = replica_config(bucket)
    command = ["make", "-C", str(REPOSITORY), "run", f"REGISTRY_CONFIG={config}"]
    with (tmp_path / "make-run.log").open("wb") as log:
        proc = subprocess.Popen(
            [*command, f"PORT={free_port()}"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C at a terminal reaches the whole group
        )
    try:
        wait_until(
            lambda: proc.poll() is None and dump(warm_db) == bucket.reference,
            timeout=120,
            what=f"make run to warm the replica's Redis (log: {tmp_path / 'make-run.log'})",
        )
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
        wait_until(lambda: not _group(proc.pid), timeout=30, what="make run's processes to end")


def _group(pgid: int) -> list[str]:
    # Live processes of a process group (zombies are dead for our purpose).
    ps = subprocess.run(
        ["ps", "-o", "stat=", "-g", str(pgid)], check=False, capture_output=True, text=True
    )
    return [s for s in ps.stdout.split() if not s.startswith("Z")]
