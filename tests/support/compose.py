"""docker-compose.yml and docker-compose.s3.yml as ``docker-compose config`` resolves them (the
anchors merged, ``.env`` interpolated, paths made absolute): for ``tests/e2e/test_deploy.py``
(the files themselves) and ``tests/image`` (their services run with the image).

No Docker engine is needed: Debian's ``docker-compose`` (v1) resolves and validates the files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

__all__ = ["COMPOSE", "COMPOSE_S3", "EXAMPLE_ENV", "ROOT", "docker_compose", "resolved"]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_S3 = ROOT / "docker-compose.s3.yml"
#: What the files interpolate from .env; none of it is a secret.
EXAMPLE_ENV = ("FLOWER_USER", "PUBLISH_ADDRESS", "SENTRY_DSN", "WARMER_REGISTRY_VERSION")


def docker_compose(
    files: tuple[Path, ...], env_file: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``docker-compose -f FILE... --env-file ENV_FILE ARGS``, with only the variables given:
    none of the caller's, no ``.env`` of the checkout. Skips (fails under
    ``WARMER_REQUIRE_E2E=1``) without docker-compose."""
    if shutil.which("docker-compose") is None:
        if os.environ.get("WARMER_REQUIRE_E2E") == "1":
            pytest.fail("docker-compose is not installed (WARMER_REQUIRE_E2E=1)")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    names = (*EXAMPLE_ENV, "REGISTRY_IMAGE")
    base = {k: v for k, v in os.environ.items() if k not in names}
    paths = [arg for f in files for arg in ("-f", str(f))]
    return subprocess.run(
        ["docker-compose", *paths, "--env-file", str(env_file), *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def resolved(workdir: Path, files: tuple[Path, ...] = (COMPOSE,), **values: str) -> dict[str, Any]:
    """The compose files as ``docker-compose config`` resolves them, with ``values`` as .env."""
    env_file = workdir / "resolved.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    proc = docker_compose(files, env_file, "config")
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = yaml.safe_load(proc.stdout)
    return data
