"""The registry of docker-compose.yml: deploy/registry/start.sh (its secrets from files, its
version checked) and the mounted config, with a stand-in ``registry`` and with real ones."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from tests.support.compose import ROOT
from tests.support.registry import REGISTRY_BINARIES, registry_binary
from worker.cli.processes import free_ports, wait_until
from worker.cli.up import registry_snippet
from worker.config.settings import load_settings

START = ROOT / "deploy/registry/start.sh"
REGISTRY_CONFIGS = {v: ROOT / f"deploy/registry/config-{v}.yml" for v in ("2", "3")}
#: Every character a token may hold (with sed, "&" turned into another token, "|" crashed).
TOKEN = "Ab0-._~+/x=="

# A stand-in registry: `--version` as the image's prints it, `serve` prints what it was given.
_FAKE = """#!/bin/sh
if [ "$1" = --version ]; then echo "registry github.com/distribution/distribution/v3 $VERSION"
else python3 -c 'import json, os, sys; print(json.dumps({"args": sys.argv[1:],
  "env": {k: v for k, v in os.environ.items() if k.startswith("REGISTRY_")}}))' "$@"; fi
"""


def _start(
    tmp_path: Path, secrets: dict[str, str], *, version: str = "v3.1.1", told: str = "3"
) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "registry").write_text(_FAKE)
    (bin_dir / "registry").chmod(0o755)
    folder = tmp_path / "secrets"
    folder.mkdir(exist_ok=True)
    for name, value in secrets.items():
        (folder / name).write_text(value)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SECRETS": str(folder),
        "VERSION": version,
        "WARMER_REGISTRY_VERSION": told,
    }
    return subprocess.run(
        ["sh", str(START), "/etc/warmer/registry.yml"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_start_puts_the_token_from_its_file_into_the_endpoint_as_is(tmp_path: Path) -> None:
    proc = _start(tmp_path, {"webhook_token": TOKEN + "\n"})
    assert proc.returncode == 0, proc.stderr
    given: dict[str, Any] = json.loads(proc.stdout)
    assert given["args"] == ["serve", "/etc/warmer/registry.yml"]
    (endpoint,) = yaml.safe_load(given["env"]["REGISTRY_NOTIFICATIONS_ENDPOINTS"])
    assert endpoint["url"] == "http://webhook:8000/events"
    assert endpoint["headers"]["Authorization"] == [f"Bearer {TOKEN}"]
    # The snippet `warmer up` prints (and the README shows) has the same endpoint.
    for version, config in REGISTRY_CONFIGS.items():
        settings = load_settings(registry_config=str(config), webhook_token=TOKEN)
        snippet = yaml.safe_load(registry_snippet(settings, "webhook", 8000, show_token=True))
        assert snippet["notifications"]["endpoints"] == [endpoint], version


def test_start_exports_each_registry_secret_file_as_its_variable(tmp_path: Path) -> None:
    secrets = {
        "webhook_token": "t0ken",
        "REGISTRY_STORAGE_S3_ACCESSKEY": "user-1\n",
        "REGISTRY_STORAGE_S3_SECRETKEY": "key 1/+=\n",
    }
    proc = _start(tmp_path, secrets)
    assert proc.returncode == 0, proc.stderr
    env = json.loads(proc.stdout)["env"]
    assert env["REGISTRY_STORAGE_S3_ACCESSKEY"] == "user-1"
    assert env["REGISTRY_STORAGE_S3_SECRETKEY"] == "key 1/+="


@pytest.mark.parametrize(
    ("secrets", "said"),
    [
        ({"webhook_token": "\n"}, "webhook_token is empty"),
        ({}, "webhook_token"),
        ({"webhook_token": "t", "REGISTRY_STORAGE_S3_SECRETKEY": ""}, "SECRETKEY is empty"),
    ],
    ids=["empty", "missing", "empty-s3"],
)
def test_start_refuses_a_missing_or_empty_secret(
    tmp_path: Path, secrets: dict[str, str], said: str
) -> None:
    proc = _start(tmp_path, secrets)
    assert proc.returncode != 0
    assert said in proc.stderr
    assert not proc.stdout  # the registry never started


@pytest.mark.parametrize(
    ("version", "told", "starts"),
    [
        ("v3.1.1", "3", True),
        ("v3.1.1", "2", False),
        ("v2.8.3", "2", True),
        ("2.8.2+ds1", "3", False),
    ],
)
def test_start_refuses_a_registry_of_the_other_generation(
    tmp_path: Path, version: str, told: str, starts: bool
) -> None:
    proc = _start(tmp_path, {"webhook_token": "t0ken"}, version=version, told=told)
    assert (proc.returncode == 0) is starts, proc.stderr
    if not starts:
        assert f"WARMER_REGISTRY_VERSION={told} but the image runs" in proc.stderr


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
    # The same file, started by start.sh with only addresses changed for this machine: the
    # registry accepts them, and its notifications carry the token from the file exactly.
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
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "webhook_token").write_text(TOKEN + "\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "registry").symlink_to(shutil.which(binary.path) or binary.path)
    capture = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    threading.Thread(target=capture.serve_forever, daemon=True).start()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SECRETS": str(secrets),
        "WARMER_REGISTRY_VERSION": binary.version.value,
        "WARMER_WEBHOOK_URL": f"http://127.0.0.1:{capture.server_address[1]}/events",
    }
    proc = subprocess.Popen(
        ["sh", str(START), str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
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
        _push_blob(port)
        wait_until(
            lambda: bool(_Capture.headers_seen), timeout=20, what="the registry's notification"
        )
        assert _Capture.headers_seen[-1] == f"Bearer {TOKEN}"
    finally:
        capture.shutdown()
        proc.terminate()  # start.sh exec'd the registry: the signal reaches it
        proc.wait(10)


def _push_blob(port: int) -> None:
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
