"""Errors reach Sentry (a local endpoint here); tokens and Authorization headers never do."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import redis

from tests.support.notifications import envelope, event
from tests.support.redisdbs import shared_env
from tests.support.registry import free_port
from tests.support.sentry_sink import sentry_sink
from tests.support.services import warmer_process, webhook_ready
from worker.cli.processes import wait_until

TOKEN = "tok-a1b2c3-never-in-sentry"
D = "sha256:" + "d" * 64


def _post(url: str, body: bytes) -> int:
    req = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "content-type": "application/vnd.docker.distribution.events.v1+json",
            "authorization": f"Bearer {TOKEN}",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status: int = resp.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_broker_outage_reaches_sentry_without_the_token(
    redis_proc: Any, state_redis: redis.Redis, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "webhook.log"
    with sentry_sink() as sink:
        env = {
            **shared_env(redis_proc),
            "WARMER_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",  # nobody there
            "WARMER_STORAGE_ROOT": str(tmp_path),
            "WARMER_WEBHOOK_TOKEN": TOKEN,
            "SENTRY_DSN": sink.dsn,
        }
        with warmer_process(["webhook", "--port", str(port)], env, log):
            wait_until(lambda: _healthy(url), timeout=30, what="webhook /healthz")
            assert not webhook_ready(url)  # the broker is down, and /readyz says so
            assert _post(f"{url}/events", envelope(event("push", "team/app", D))) == 503
            wait_until(
                lambda: "broker unavailable" in sink.text(),
                timeout=20,
                what="the error to reach Sentry",
            )
    assert TOKEN not in sink.text()
    assert "Bearer" not in sink.text()
    assert TOKEN not in log.read_text()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False
