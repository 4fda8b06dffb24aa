"""The deployment files: docker-compose.yml, the registry config it mounts, the Dockerfile.

No Docker engine runs here: the compose file is checked against the compose-spec schema and by
``docker-compose config``, and the registry config by a real registry that starts with it.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from tests.support.registry import REGISTRY_BINARIES, registry_binary
from worker.cli.processes import free_ports, wait_until
from worker.cli.up import registry_snippet
from worker.config.registryfile import read_registry_config
from worker.config.settings import load_settings
from worker.config.storageurl import StorageTarget, parse_storage_url

ROOT = Path(__file__).resolve().parents[2]
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


def _docker_compose(
    env_file: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    if shutil.which("docker-compose") is None:
        if os.environ.get("WARMER_REQUIRE_E2E") == "1":
            pytest.fail("docker-compose is not installed (WARMER_REQUIRE_E2E=1)")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    # Only what the test gives: no variable of the caller's, no .env of the checkout.
    base = {k: v for k, v in os.environ.items() if k not in (*ENV, "PUBLISH_ADDRESS")}
    return subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "--env-file", str(env_file), *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def _resolved(tmp_path: Path, **values: str) -> dict[str, Any]:
    env_file = tmp_path / "resolved.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in {**ENV, **values}.items()))
    proc = _docker_compose(env_file, "config")
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = yaml.safe_load(proc.stdout)
    return data


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    proc = _docker_compose(empty, "config", "-q", env=ENV)
    assert proc.returncode == 0, proc.stderr


def test_compose_refuses_the_example_env_until_each_secret_is_set(tmp_path: Path) -> None:
    # `cp .env.example .env` and nothing more: refused, naming the variable to set.
    env_file = tmp_path / ".env"
    example = (ROOT / ".env.example").read_text()
    env_file.write_text(example)
    proc = _docker_compose(env_file, "config", "-q")
    assert proc.returncode != 0
    assert "set WARMER_WEBHOOK_TOKEN in .env" in proc.stderr
    env_file.write_text(example.replace("WARMER_WEBHOOK_TOKEN=\n", "WARMER_WEBHOOK_TOKEN=x1\n"))
    proc = _docker_compose(env_file, "config", "-q")
    assert proc.returncode != 0
    assert "set FLOWER_PASSWORD in .env" in proc.stderr
    # The old example's placeholders are gone: no value in it is one anybody could start with.
    assert "change-me" not in example.lower()


def test_compose_publishes_on_localhost_only_and_never_the_webhook(tmp_path: Path) -> None:
    services = _resolved(tmp_path)["services"]
    published = {
        name: [p if isinstance(p, str) else p.get("host_ip") for p in s.get("ports", [])]
        for name, s in services.items()
    }
    assert published["registry"] == ["127.0.0.1:5000:5000/tcp"]
    assert published["flower"] == ["127.0.0.1:5555:5555/tcp"]
    assert all(not ports for name, ports in published.items() if name not in ("registry", "flower"))
    # Published to every network only when the operator says so.
    services = _resolved(tmp_path, PUBLISH_ADDRESS="0.0.0.0")["services"]
    assert services["registry"]["ports"] == ["0.0.0.0:5000:5000/tcp"]


def test_the_token_reaches_the_registry_as_is(tmp_path: Path) -> None:
    # Every character a token may hold, in the resolved compose file: no shell, no sed.
    token = "Ab0-._~+/x=="
    registry = _resolved(tmp_path, WARMER_WEBHOOK_TOKEN=token)["services"]["registry"]
    assert "entrypoint" not in registry
    (endpoint,) = yaml.safe_load(registry["environment"]["REGISTRY_NOTIFICATIONS_ENDPOINTS"])
    assert endpoint["headers"]["Authorization"] == [f"Bearer {token}"]


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


def _endpoints(token: str, url: str | None = None) -> str:
    """The compose file's REGISTRY_NOTIFICATIONS_ENDPOINTS, interpolated as compose does."""
    raw: str = _compose()["services"]["registry"]["environment"]["REGISTRY_NOTIFICATIONS_ENDPOINTS"]
    value = re.sub(r"\$\{WARMER_WEBHOOK_TOKEN:\?[^}]*\}", lambda _: token, raw)
    return value.replace("http://webhook:8000/events", url) if url else value


def test_compose_runs_registry_3_unless_told_2() -> None:
    services = _compose()["services"]
    assert services["registry"]["image"] == "registry:${WARMER_REGISTRY_VERSION:-3}"
    (config,) = [v for v in services["registry"]["volumes"] if "deploy/registry" in v]
    assert config.startswith("./deploy/registry/config-${WARMER_REGISTRY_VERSION:-3}.yml:")
    # The warmer reads the very file the registry reads, read-only.
    for name in ("webhook", "worker", "beat", "flower"):
        env = services[name]["environment"]
        assert config == f"{config.split('.yml:')[0]}.yml:{env['WARMER_REGISTRY_CONFIG']}:ro"
        assert config in services[name]["volumes"], name
        assert not {"WARMER_REDIS_URL", "WARMER_STORAGE_ROOT", "WARMER_REGISTRY_VERSION"} & set(env)


@pytest.mark.parametrize("version", ["2", "3"])
def test_registry_config_is_what_the_warmer_is_told_and_what_the_docs_say(version: str) -> None:
    config = yaml.safe_load(REGISTRY_CONFIGS[version].read_text())
    assert config["storage"]["cache"]["blobdescriptor"] == "redis"
    assert ("addrs" in config["redis"]) is (version == "3")  # 3.x ignores a 2.x addr:
    # What the warmer takes from the mounted file: cache, storage, version.
    told = load_settings(registry_config=str(REGISTRY_CONFIGS[version]))
    assert told.redis_url == "redis://redis-cache:6379/0"
    assert told.storage == StorageTarget("filesystem", "/var/lib/registry")
    assert told.registry_version.value == version
    (endpoint,) = yaml.safe_load(_endpoints("t0ken"))
    assert endpoint["url"] == "http://webhook:8000/events"
    assert endpoint["headers"]["Authorization"] == ["Bearer t0ken"]
    # The snippet `warmer up --dev` prints (and the README shows) for that version has the
    # same shape.
    settings = load_settings(registry_config=str(REGISTRY_CONFIGS[version]), webhook_token="t0ken")
    snippet = yaml.safe_load(registry_snippet(settings, "webhook", 8000, show_token=True))
    (printed,) = snippet["notifications"]["endpoints"]
    assert printed == endpoint
    assert snippet["redis"] == config["redis"]
    assert snippet["storage"]["cache"] == config["storage"]["cache"]
    assert snippet["storage"]["filesystem"] == config["storage"]["filesystem"]


def test_the_s3_variant_shares_one_bucket_between_registry_and_warmer() -> None:
    s3 = yaml.safe_load((ROOT / "docker-compose.s3.yml").read_text())["services"]
    config = "./deploy/registry/config-s3.yml:/etc/warmer/registry.yml:ro"
    for name in ("registry", "webhook", "worker", "beat", "flower"):
        assert config in s3[name]["volumes"], name
        assert "REGISTRY_STORAGE_S3_ACCESSKEY" in s3[name]["environment"], name
    env = {"REGISTRY_STORAGE_S3_ACCESSKEY": "user", "REGISTRY_STORAGE_S3_SECRETKEY": "pass"}
    told = read_registry_config(ROOT / "deploy/registry/config-s3.yml", env)
    target = parse_storage_url(told["storage_url"])
    assert (target.bucket, target.root, target.endpoint) == (
        "registry",
        "registry",
        "http://minio:9000",
    )
    assert (target.access_key, target.secret_key, target.path_style) == ("user", "pass", True)
    assert told["redis_url"] == "redis://redis-cache:6379/0"
    assert told["registry_version"] == "3"


def test_docker_compose_accepts_the_s3_variant(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("MINIO_ROOT_USER=registry\nMINIO_ROOT_PASSWORD=secret-1\n")
    proc = _docker_compose(
        env_file, "-f", str(ROOT / "docker-compose.s3.yml"), "config", "-q", env=ENV
    )
    assert proc.returncode == 0, proc.stderr


class _Capture(http.server.BaseHTTPRequestHandler):
    headers_seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        type(self).headers_seen.append(self.headers.get("authorization") or "")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.e2e
@pytest.mark.parametrize("name", REGISTRY_BINARIES)
def test_a_real_registry_starts_with_the_mounted_config_and_sends_the_token(
    redis_proc: Any, tmp_path: Path, name: str
) -> None:
    binary = registry_binary(name)
    # The same file and endpoint, with only addresses changed for this machine: the registry
    # accepts them, and its notifications carry the token exactly, whatever RFC 6750
    # characters it holds (with sed, "&" turned into another token, "|" crashed the registry).
    token = "Ab0-._~+/x=="
    _Capture.headers_seen.clear()
    config = yaml.safe_load(REGISTRY_CONFIGS[binary.version.value].read_text())
    port, debug = free_ports(2)
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
    capture = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    threading.Thread(target=capture.serve_forever, daemon=True).start()
    sink = f"http://127.0.0.1:{capture.server_address[1]}/events"
    env = {"REGISTRY_NOTIFICATIONS_ENDPOINTS": _endpoints(token, sink)}
    proc = subprocess.Popen(
        [binary.path, "serve", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
    )
    try:

        def answers() -> bool:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
                return True
            except OSError:
                return proc.poll() is not None

        wait_until(answers, timeout=20, what="the registry with the compose config")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        upload = urllib.request.Request(
            f"http://127.0.0.1:{port}/v2/team/app/blobs/uploads/", method="POST"
        )
        with urllib.request.urlopen(upload, timeout=5) as resp:
            location = resp.headers["Location"]
        data = b"a blob"
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        sep = "&" if "?" in location else "?"
        put = urllib.request.Request(
            f"{location}{sep}digest={digest}",
            data=data,
            method="PUT",
            headers={"Content-Type": "application/octet-stream"},
        )
        urllib.request.urlopen(put, timeout=5).close()
        wait_until(
            lambda: bool(_Capture.headers_seen), timeout=20, what="the registry's notification"
        )
        assert _Capture.headers_seen[-1] == f"Bearer {token}"
    finally:
        capture.shutdown()
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
