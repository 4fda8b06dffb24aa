"""``warmer up --dev`` (``make run``): its own Redis servers unless told, the same ports and
token across restarts, and the line that points another shell at it."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.redisdbs import shared_env
from worker.cli.processes import throwaway_redis
from worker.cli.up import DEV_TOKEN_FILE, _dev_defaults
from worker.config.settings import Settings, load_settings


def _export_line(said: list[str]) -> list[str]:
    return [line for text in said for line in text.splitlines() if line.startswith("export ")]


def _run(settings: Settings) -> tuple[Settings, list[str]]:
    said: list[str] = []
    with _dev_defaults(settings, said.append) as dev:
        assert redis.Redis.from_url(dev.redis_url).ping()
        assert redis.Redis.from_url(dev.state_url).ping()
        return dev, said


def test_a_redis_nobody_named_is_never_used_and_restarts_keep_ports_and_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    defaults = load_settings()  # nothing set: localhost:6379, which may well answer here
    first, said = _run(defaults)
    for url in (first.redis_url, first.broker_url, first.state_url):
        assert url != defaults.redis_url
        assert ":6379/" not in url
    (exports,) = _export_line(said)
    assert exports.startswith("export ")
    values = dict(word.split("=", 1) for word in shlex.split(exports)[1:])
    assert values["WARMER_REDIS_URL"] == first.redis_url
    assert values["WARMER_STATE_URL"] == first.state_url
    token = first.webhook_token
    assert token is not None
    assert token.get_secret_value() not in exports  # the token is never in it
    assert oct(os.stat(DEV_TOKEN_FILE).st_mode & 0o777) == "0o600"
    second, _ = _run(defaults)
    assert second.redis_url == first.redis_url  # the registry's config names this port
    assert second.state_url == first.state_url
    assert second.webhook_token is not None
    assert second.webhook_token.get_secret_value() == token.get_secret_value()


def test_a_redis_that_was_named_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_proc: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    env = shared_env(redis_proc)
    named = load_settings(redis_url=env["WARMER_REDIS_URL"])
    dev, said = _run(named)
    assert dev.redis_url == env["WARMER_REDIS_URL"]
    assert not any("the cache on a throwaway" in line for line in said)


def test_another_shell_sees_the_instance_through_the_printed_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    said: list[str] = []
    with _dev_defaults(load_settings(), said.append) as dev:
        redis.Redis.from_url(dev.state_url).hset("warmer:counters", "warmed", 7)
        (line,) = _export_line(said)
        warmer = shlex.quote(str(Path(sys.executable).with_name("warmer")))
        script = f"{line}; exec {warmer} stats --json"
        shown = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert '"warmed": 7' in shown.stdout


def test_a_restart_takes_the_same_port_though_clients_were_connected() -> None:
    # The registry stays connected to the cache's Redis: when the server stops, its side of
    # each connection waits in TIME_WAIT, and a bind without SO_REUSEADDR took another port.
    with throwaway_redis() as port:
        client = redis.Redis(port=port)
        assert client.ping()
    client.close()
    with throwaway_redis(port=port) as again:
        assert again == port
