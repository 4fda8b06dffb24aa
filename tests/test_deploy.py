"""The deployment files: docker-compose.yml, the registry config it mounts, the Dockerfile.

No Docker engine runs here: the compose file is checked against the compose-spec schema and by
``docker-compose config``, and the registry config by a real registry that starts with it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.registry import REGISTRY_BINARIES, free_port, registry_binary, wait_for
from worker.cli.up import registry_snippet
from worker.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
REGISTRY_CONFIGS = {v: ROOT / f"deploy/registry/config-{v}.yml" for v in ("2", "3")}
ENV = {"WARMER_WEBHOOK_TOKEN": "t0ken", "FLOWER_USER": "admin", "FLOWER_PASSWORD": "pw"}


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_compose_file_follows_the_compose_spec() -> None:
    checker = str(Path(sys.executable).with_name("check-jsonschema"))
    proc = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_docker_compose_accepts_the_file() -> None:
    if shutil.which("docker-compose") is None:
        if os.environ.get("WARMER_REQUIRE_E2E") == "1":
            pytest.fail("docker-compose is not installed (WARMER_REQUIRE_E2E=1)")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    proc = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"],
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr


def test_compose_holds_every_service_in_a_healthy_order() -> None:
    services = _compose()["services"]
    assert set(services) == {
        "registry",
        "redis-cache",
        "broker",
        "webhook",
        "worker",
        "beat",
        "flower",
    }
    for name in ("webhook", "worker", "beat", "flower"):
        depends = services[name]["depends_on"]
        assert depends["broker"]["condition"] == "service_healthy", name
        assert depends["redis-cache"]["condition"] == "service_healthy", name
    assert services["registry"]["depends_on"]["webhook"]["condition"] == "service_healthy"
    for name, service in services.items():
        assert "healthcheck" in service, name


def test_the_cache_evicts_and_the_broker_never_does() -> None:
    services = _compose()["services"]
    cache = " ".join(services["redis-cache"]["command"])
    broker = " ".join(services["broker"]["command"])
    assert "--maxmemory-policy allkeys-lru" in cache
    assert "--maxmemory-policy noeviction" in broker
    assert "--appendonly yes" in broker
    assert services["broker"]["volumes"]


def test_compose_runs_registry_3_unless_told_2() -> None:
    services = _compose()["services"]
    assert services["registry"]["image"] == "registry:${WARMER_REGISTRY_VERSION:-3}"
    (config,) = [v for v in services["registry"]["volumes"] if "deploy/registry" in v]
    assert config.startswith("./deploy/registry/config-${WARMER_REGISTRY_VERSION:-3}.yml:")
    env = services["webhook"]["environment"]
    assert env["WARMER_REGISTRY_VERSION"] == "${WARMER_REGISTRY_VERSION:-3}"


@pytest.mark.parametrize("version", ["2", "3"])
def test_registry_config_is_what_the_warmer_is_told_and_what_the_docs_say(version: str) -> None:
    config = yaml.safe_load(REGISTRY_CONFIGS[version].read_text())
    env = _compose()["services"]["webhook"]["environment"]
    cache_url = env["WARMER_REDIS_URL"]
    assert config["storage"]["cache"]["blobdescriptor"] == "redis"
    assert config["storage"]["filesystem"]["rootdirectory"] == env["WARMER_STORAGE_ROOT"]
    (endpoint,) = config["notifications"]["endpoints"]
    assert endpoint["url"] == "http://webhook:8000/events"
    assert endpoint["headers"]["Authorization"] == ["Bearer __WARMER_WEBHOOK_TOKEN__"]
    # The snippet `warmer up` prints (and the README shows) for that version has the same shape.
    settings = load_settings(
        redis_url=cache_url,
        storage_root=env["WARMER_STORAGE_ROOT"],
        webhook_token="__WARMER_WEBHOOK_TOKEN__",
        registry_version=version,
    )
    snippet = yaml.safe_load(registry_snippet(settings, "webhook", 8000))
    (printed,) = snippet["notifications"]["endpoints"]
    assert printed == endpoint
    assert snippet["redis"] == config["redis"]
    assert ("addrs" in config["redis"]) is (version == "3")  # 3.x ignores a 2.x addr:
    assert snippet["storage"]["cache"] == config["storage"]["cache"]


@pytest.mark.e2e
@pytest.mark.parametrize("name", REGISTRY_BINARIES)
def test_a_real_registry_starts_with_the_mounted_config(
    redis_proc: Any, tmp_path: Path, name: str
) -> None:
    binary = registry_binary(name)
    # The same file, with only addresses changed for this machine: the registry accepts it.
    version = binary.version.value
    text = REGISTRY_CONFIGS[version].read_text().replace("__WARMER_WEBHOOK_TOKEN__", "t0ken")
    config = yaml.safe_load(text)
    port, debug = free_port(), free_port()
    config["http"]["addr"] = f"127.0.0.1:{port}"
    config["http"]["debug"]["addr"] = f"127.0.0.1:{debug}"
    local = f"127.0.0.1:{redis_proc.port}"
    if "addrs" in config["redis"]:
        config["redis"]["addrs"] = [local]
    else:
        config["redis"]["addr"] = local
    config["storage"]["filesystem"]["rootdirectory"] = str(tmp_path / "storage")
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [binary.path, "serve", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:

        def answers() -> bool:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
                return True
            except OSError:
                return proc.poll() is not None

        wait_for(answers, what="the registry with the compose config")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.terminate()
        proc.wait(10)


def test_dockerfile_is_slim_non_root_checked_and_pinned() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim", text, re.MULTILINE)
    assert re.search(r"^USER warmer$", text, re.MULTILINE)
    assert "HEALTHCHECK" in text
    assert "-c constraints.txt" in text


def test_constraints_pin_every_runtime_dependency() -> None:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name = re.split(r"[\[<>=!~ ]", requirement, maxsplit=1)[0]
        assert pins.get(re.sub(r"[-_.]+", "-", name).lower()), f"{name} is not pinned"
