"""The deployment files: docker-compose.yml (and its S3 variant), the registry config it mounts,
the Dockerfile.

No Docker engine runs here: the compose files are checked against the compose-spec schema and by
``docker-compose config``, the registry's config and start script by a real registry that
starts with them (test_deploy_registry.py). ``make image-test`` runs the services themselves with
the built image (tests/image).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.compose import COMPOSE, COMPOSE_S3, ROOT, docker_compose, resolved
from worker.config.settings import Settings, load_settings
from worker.config.storageurl import StorageTarget

REGISTRY_CONFIGS = {v: ROOT / f"deploy/registry/config-{v}.yml" for v in ("2", "3")}
WARMERS = ("webhook", "worker", "beat", "flower")
#: What names a secret; only a *_FILE variable may say it.
_SECRET_NAME = re.compile(r"TOKEN|PASSWORD|SECRET|ACCESSKEY|CREDENTIAL", re.IGNORECASE)


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _version() -> str:
    version: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return version


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts, duration
    return sum(float(n) * units[u] for n, u in parts)


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_S3], ids=lambda p: p.name)
def test_compose_files_follow_the_compose_spec(path: Path) -> None:
    checker = str(Path(sys.executable).with_name("check-jsonschema"))
    proc = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("files", [(COMPOSE,), (COMPOSE, COMPOSE_S3)], ids=["volume", "s3"])
def test_docker_compose_accepts_the_files_with_no_env_at_all(
    tmp_path: Path, files: tuple[Path, ...]
) -> None:
    # Nothing to fill in before `docker compose up`: every secret is a file, every other value
    # has a default.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    proc = docker_compose(files, empty, "config", "-q")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("files", [(COMPOSE,), (COMPOSE, COMPOSE_S3)], ids=["volume", "s3"])
def test_secrets_are_files_never_environment_variables(
    tmp_path: Path, files: tuple[Path, ...]
) -> None:
    data = resolved(tmp_path, files)
    secrets = data["secrets"]
    for name, secret in secrets.items():
        # In deploy/secrets/, which git and the image's build context both leave out.
        assert Path(secret["file"]).parent == ROOT / "deploy/secrets", name
    assert "*" in (ROOT / "deploy/secrets/.gitignore").read_text().split()
    assert "deploy" in (ROOT / ".dockerignore").read_text().split()
    for name, service in data["services"].items():
        env = service.get("environment") or {}
        for variable, value in env.items():
            if _SECRET_NAME.search(variable):
                # Only the path of a file compose mounts for that service.
                assert variable.endswith("_FILE"), (name, variable)
                mounted = {s.get("target", s["source"]) for s in service["secrets"]}
                assert value.removeprefix("/run/secrets/") in mounted, (name, variable)
        for mount in service.get("secrets", []):
            assert mount["source"] in secrets, (name, mount)
        text = " ".join(str(part) for part in service.get("command") or [])
        assert not _SECRET_NAME.search(text), (name, text)
    example = (ROOT / ".env.example").read_text()
    assert not re.search(r"^\s*#?\s*\w*(TOKEN|PASSWORD|SECRET)\w*=", example, re.MULTILINE)
    assert "change-me" not in example.lower()


def test_each_service_gets_only_the_secrets_it_reads(tmp_path: Path) -> None:
    services = resolved(tmp_path)["services"]
    mounted = {name: {s["source"] for s in s.get("secrets", [])} for name, s in services.items()}
    assert mounted["webhook"] == {"webhook_token"}
    assert mounted["registry"] == {"webhook_token"}
    assert mounted["flower"] == {"flower_password"}
    assert not mounted["worker"] | mounted["beat"] | mounted["broker"] | mounted["redis-cache"]
    assert services["webhook"]["environment"]["WARMER_WEBHOOK_TOKEN_FILE"] == (
        "/run/secrets/webhook_token"
    )
    assert services["flower"]["environment"]["FLOWER_PASSWORD_FILE"] == (
        "/run/secrets/flower_password"
    )


def test_compose_publishes_on_localhost_only_and_never_the_webhook(tmp_path: Path) -> None:
    services = resolved(tmp_path)["services"]
    published = {
        name: [p if isinstance(p, str) else p.get("host_ip") for p in s.get("ports", [])]
        for name, s in services.items()
    }
    assert published["registry"] == ["127.0.0.1:5000:5000/tcp"]
    assert published["flower"] == ["127.0.0.1:5555:5555/tcp"]
    assert all(not ports for name, ports in published.items() if name not in ("registry", "flower"))
    # Published to every network only when the operator says so.
    services = resolved(tmp_path, PUBLISH_ADDRESS="0.0.0.0")["services"]
    assert services["registry"]["ports"] == ["0.0.0.0:5000:5000/tcp"]


def test_compose_holds_every_service_in_a_healthy_order() -> None:
    services = _compose()["services"]
    assert set(services) == {"registry", "redis-cache", "broker", *WARMERS}
    for name in WARMERS:
        depends = services[name]["depends_on"]
        assert depends["broker"]["condition"] == "service_healthy", name
        assert depends["redis-cache"]["condition"] == "service_healthy", name
    # The registry queues its notifications until the webhook answers: it never waits for it.
    assert set(services["registry"]["depends_on"]) == {"redis-cache"}
    for name, service in services.items():
        assert "healthcheck" in service, name


def test_stopping_gives_the_warmer_its_whole_shutdown_grace(tmp_path: Path) -> None:
    grace = Settings.model_fields["shutdown_grace"].default
    services = resolved(tmp_path)["services"]
    for name in WARMERS:
        # Docker's default (10 s) killed a stopping worker inside its 15 s grace.
        assert _seconds(services[name]["stop_grace_period"]) >= grace + 10, name


def test_the_worker_health_check_names_the_worker_by_its_host_name(tmp_path: Path) -> None:
    (kind, command) = resolved(tmp_path)["services"]["worker"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    # $HOSTNAME is empty in a health check's shell; $(hostname) is the worker's own name.
    # (`config` prints a $ as $$, for compose to read again.)
    assert "celery@$$(hostname)" in command
    assert "HOSTNAME" not in command


@pytest.mark.parametrize("files", [(COMPOSE,), (COMPOSE, COMPOSE_S3)], ids=["volume", "s3"])
def test_every_image_is_pinned_and_every_log_rotated(
    tmp_path: Path, files: tuple[Path, ...]
) -> None:
    for name, service in resolved(tmp_path, files)["services"].items():
        image: str = service["image"]
        tag = image.rpartition(":")[2]
        assert re.fullmatch(r"\d+\.\d+\.\d+(-alpine)?|RELEASE\.[\dT-]+Z", tag), (name, image)
        logging = service["logging"]
        assert logging["driver"] == "json-file", name
        assert set(logging["options"]) == {"max-size", "max-file"}, name
        if "build" in service:
            assert image == f"registry-cache-warmer:{_version()}", name


def test_the_s3_warmers_start_once_the_bucket_exists(tmp_path: Path) -> None:
    services = resolved(tmp_path, (COMPOSE, COMPOSE_S3))["services"]
    # The warmer's start-up check of the store failed, and restarted, until `bucket` ran.
    for name in (*WARMERS, "registry"):
        depends = services[name]["depends_on"]
        assert depends["bucket"]["condition"] == "service_completed_successfully", name
    assert services["bucket"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "restart" not in services["bucket"]  # one shot


def test_the_cache_evicts_and_the_broker_never_does() -> None:
    services = _compose()["services"]
    cache = " ".join(services["redis-cache"]["command"])
    broker = " ".join(services["broker"]["command"])
    assert "--maxmemory-policy allkeys-lru" in cache
    assert "--maxmemory-policy noeviction" in broker
    assert "--appendonly yes" in broker
    assert services["broker"]["volumes"]


def test_compose_runs_registry_3_unless_told_2(tmp_path: Path) -> None:
    services = _compose()["services"]
    assert services["registry"]["image"] == "${REGISTRY_IMAGE:-registry:3.1.1}"
    (config,) = [v for v in services["registry"]["volumes"] if "/config-" in v]
    assert config.startswith("./deploy/registry/config-${WARMER_REGISTRY_VERSION:-3}.yml:")
    # The warmer reads the very file the registry reads, read-only.
    for name in WARMERS:
        env = services[name]["environment"]
        assert config == f"{config.split('.yml:')[0]}.yml:{env['WARMER_REGISTRY_CONFIG']}:ro"
        assert config in services[name]["volumes"], name
        assert not {"WARMER_REDIS_URL", "WARMER_STORAGE_ROOT", "WARMER_REGISTRY_VERSION"} & set(env)
    two = resolved(tmp_path, WARMER_REGISTRY_VERSION="2", REGISTRY_IMAGE="registry:2.8.3")
    registry = two["services"]["registry"]
    assert registry["image"] == "registry:2.8.3"
    assert registry["environment"]["WARMER_REGISTRY_VERSION"] == "2"  # start.sh checks it
    assert (
        f"{ROOT}/deploy/registry/config-2.yml:/etc/warmer/registry.yml:ro"
        in (two["services"]["worker"]["volumes"])
    )


@pytest.mark.parametrize("version", ["2", "3"])
def test_registry_config_is_what_the_warmer_is_told(version: str) -> None:
    config = yaml.safe_load(REGISTRY_CONFIGS[version].read_text())
    assert config["storage"]["cache"]["blobdescriptor"] == "redis"
    assert ("addrs" in config["redis"]) is (version == "3")  # 3.x ignores a 2.x addr:
    # What the warmer takes from the mounted file: cache, storage, version.
    told = load_settings(registry_config=str(REGISTRY_CONFIGS[version]))
    assert told.redis_url == "redis://redis-cache:6379/0"
    assert told.storage == StorageTarget("filesystem", "/var/lib/registry")
    assert told.registry_version.value == version


def test_the_s3_variant_shares_one_bucket_and_its_keys_as_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = resolved(tmp_path, (COMPOSE, COMPOSE_S3))["services"]
    config = f"{ROOT}/deploy/registry/config-s3.yml:/etc/warmer/registry.yml:ro"
    keys = {"REGISTRY_STORAGE_S3_ACCESSKEY": "user-1", "REGISTRY_STORAGE_S3_SECRETKEY": "key-1"}
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("registry", *WARMERS):
        assert config in services[name]["volumes"], name
        targets = {s.get("target") for s in services[name]["secrets"]}
        assert set(keys) <= targets, name  # the registry's start.sh exports files so named
    # MinIO's root user and password are the registry's keys, from the same two files.
    minio = services["minio"]["environment"]
    assert minio["MINIO_ROOT_USER_FILE"] == "/run/secrets/s3_access_key"
    assert minio["MINIO_ROOT_PASSWORD_FILE"] == "/run/secrets/s3_secret_key"
    # The warmer, as the worker's environment says, with the secrets where compose mounts them.
    env = services["worker"]["environment"]
    for variable, value in keys.items():
        path = secrets / Path(env[f"{variable}_FILE"]).name
        path.write_text(value + "\n")
        monkeypatch.setenv(f"{variable}_FILE", str(path))
    told = load_settings(registry_config=str(ROOT / "deploy/registry/config-s3.yml"))
    target = told.storage
    assert target is not None
    assert (target.bucket, target.root, target.endpoint) == (
        "registry",
        "registry",
        "http://minio:9000",
    )
    assert (target.access_key, target.secret_key, target.path_style) == ("user-1", "key-1", True)
    assert told.redis_url == "redis://redis-cache:6379/0"
    assert told.registry_version.value == "3"


def test_dockerfile_is_slim_non_root_checked_and_pinned() -> None:
    text = (ROOT / "Dockerfile").read_text()
    # One base for both stages, python:3.x-slim unless told (make image-test: its own).
    assert re.search(r"^ARG BASE=python:3\.\d+-slim$", text, re.MULTILINE)
    assert re.findall(r"^FROM (\S+)", text, re.MULTILINE) == ["${BASE}", "${BASE}"]
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
