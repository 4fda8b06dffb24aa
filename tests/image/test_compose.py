"""docker-compose.yml and its S3 variant, run with the built image (tests/image/stack.py says how
without Docker): every service healthy by its own health check, a push through the registry
warmed by the webhook and worker services, no secret in any container's configuration, and a
clean stop within each service's stop_grace_period."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.image.podman import Podman
from tests.image.stack import WARMERS, Stack, running_stack
from tests.image.warm import TAG, pushed_image, wait_warm
from tests.support.compose import COMPOSE, COMPOSE_S3, resolved
from tests.support.registry import registry_binary
from worker.cli.demo.registry import skopeo_copy
from worker.registry.versions import RegistryVersion

#: Compose variants: the files, their .env, the registry binary standing in for the image.
VARIANTS = {
    "volume-3": ((COMPOSE,), {}, "registry-3"),
    "volume-2": (
        (COMPOSE,),
        {"WARMER_REGISTRY_VERSION": "2", "REGISTRY_IMAGE": "registry:2.8.3"},
        "registry-2.8",
    ),
    "s3": ((COMPOSE, COMPOSE_S3), {}, "registry-3"),
}


def _stop_cleanly(stack: Stack) -> None:
    for name in stack.stop_order():
        container = stack.containers[name]
        grace = float(stack.services[name].get("stop_grace_period", "10s").rstrip("s"))
        before = len(container.logs())
        took, code = container.stop(grace)
        stopping = container.logs()[before:]
        assert took < grace, f"{name} took {took:.1f}s of {grace:.0f}: {stopping[-2000:]}"
        # The registry exits 2 on SIGTERM (distribution's own); the warmer's services 0.
        assert code == (2 if name == "registry" else 0), f"{name}: {code}, {stopping[-2000:]}"
        assert "Traceback" not in stopping, f"{name}: {stopping[-3000:]}"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_compose_services_run_healthy_warm_a_push_and_stop(
    podman: Podman, tmp_path: Path, variant: str
) -> None:
    files, env, binary_name = VARIANTS[variant]
    binary = registry_binary(binary_name)
    config = resolved(tmp_path, files, **env)
    path = shutil.which(binary.path) or binary.path
    with running_stack(podman, config, tmp_path, path) as stack:
        image, layout = pushed_image(tmp_path)
        skopeo_copy(f"oci:{layout}", f"docker://127.0.0.1:5000/{TAG}")
        version = RegistryVersion.parse(binary.version.value)
        wait_warm(image, stack.redis("redis-cache", 0), stack.redis("broker", 1), version, 60)
        # The figures the webhook and the worker recorded, as an operator asks for them.
        shown = stack.containers["worker"].exec("warmer", "stats", "--json")
        assert shown.returncode == 0, shown.stderr
        figures = json.loads(shown.stdout.splitlines()[-1])
        assert figures, shown.stdout
        # No secret in what `docker inspect` shows: names of files only.
        for name, container in stack.containers.items():
            shown_config = json.dumps(container.inspect())
            for secret, value in stack.secrets.items():
                if secret != "s3_access_key":  # "registry", a word the config holds anyway
                    assert value not in shown_config, (name, secret)
        for name in WARMERS:
            assert stack.containers[name].running(), stack.containers[name].logs()[-2000:]
        _stop_cleanly(stack)
