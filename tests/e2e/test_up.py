"""`warmer up --dev` (what `make run` runs): a first minute on nothing configured."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import redis

from bench.layout import LayoutWriter
from tests.support.notifications import envelope, event
from tests.support.redisdbs import shared_env
from tests.support.registry import free_port
from worker.cli.processes import throwaway_redis, wait_until
from worker.cli.up import TOKEN_PLACEHOLDER


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_up_dev_starts_everything_warms_and_leaves_nothing_running(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARMER_", "SENTRY_"))}
    # Configured URLs where nobody answers: --dev must bring its own Redis.
    env |= {
        "WARMER_REDIS_URL": f"{dead}/0",
        "WARMER_BROKER_URL": f"{dead}/1",
        "WARMER_STATE_URL": f"{dead}/2",
    }
    port = free_port()
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("warmer")), "up", "--dev", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: _healthz(port), timeout=60, what="/healthz of warmer up --dev")
        text = log.read_text()
        token = re.search(r"generated webhook token (\S+)", text)
        redis_port = re.search(r"throwaway redis-server on 127\.0\.0\.1:(\d+)", text)
        assert token is not None, text
        assert redis_port is not None, text
        assert f"url: http://127.0.0.1:{port}/events" in text
        # A throwaway token on a throwaway machine: printed, ready to paste.
        assert f"Authorization: [Bearer {token[1]}]" in text
        assert (tmp_path / "var/registry").is_dir()

        # It warms: a blob pushed into ./var/registry, its notification, the cache.
        layout = LayoutWriter(tmp_path / "var/registry")
        digest = layout.blob(b"hello")
        layout.link("team/app", digest)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/events",
            data=envelope(event("push", "team/app", digest)),
            headers={"content-type": "application/json", "authorization": f"Bearer {token[1]}"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 202
        cache = redis.Redis(port=int(redis_port[1]), db=0)
        wait_until(
            lambda: cache.sismember("repository::team/app::blobs", digest),
            timeout=60,
            what="the pushed blob to be warm",
        )
        children = _children(proc.pid)
        assert children
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    wait_until(
        lambda: not any(_alive(c) for c in children),
        timeout=30,
        what="every process warmer up started to end",
    )


def _healthz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return bool(json.load(resp)["status"] == "ok")
    except OSError:
        return False


def test_up_never_prints_a_token_it_was_given(tmp_path: Path, redis_proc: Any) -> None:
    # `up` is the container's default command: what it prints lands in container logs.
    token = "a-real-secret-0123456789"
    with throwaway_redis() as queues:
        env = {
            **os.environ,
            "WARMER_REDIS_URL": shared_env(redis_proc)["WARMER_REDIS_URL"],
            "WARMER_BROKER_URL": f"redis://127.0.0.1:{queues}/0",
            "WARMER_STATE_URL": f"redis://127.0.0.1:{queues}/1",
            "WARMER_STORAGE_ROOT": str(tmp_path),
            "WARMER_WEBHOOK_TOKEN": token,
        }
        port = free_port()
        log = tmp_path / "up.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(Path(sys.executable).with_name("warmer")), "up", "--port", str(port)],
                cwd=tmp_path,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until(lambda: _healthz(port), timeout=60, what="/healthz of warmer up")
            text = log.read_text()
            assert f"Authorization: [Bearer {TOKEN_PLACEHOLDER}]" in text, text
            assert token not in text
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
        assert token not in log.read_text()
