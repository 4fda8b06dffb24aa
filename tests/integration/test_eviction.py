"""The start-up check: queued work and the warmer's state never on a Redis that evicts.

Real redis-servers: the suite's shared one (the default policy, noeviction), and throwaway ones
started here with the policy a registry's cache asks for.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.support.redisdbs import DB
from tests.support.registry import free_port
from worker.cli import app
from worker.cli.processes import throwaway_redis
from worker.config.settings import load_settings
from worker.core.eviction import OVERRIDE, check_never_evicts, eviction_problem
from worker.errors import EvictingRedisError


@pytest.fixture(scope="module")
def lru_port() -> Iterator[int]:
    """A redis-server configured as the registry's docs ask for its cache: allkeys-lru."""
    with throwaway_redis(extra=["--maxmemory-policy", "allkeys-lru"]) as port:
        yield port


@pytest.fixture(scope="module")
def queue_port() -> Iterator[int]:
    """A redis-server of the warmer's own: redis-server's default policy, noeviction."""
    with throwaway_redis() as port:
        yield port


def _url(port: int, db: int, host: str = "127.0.0.1") -> str:
    return f"redis://{host}:{port}/{db}"


def _env(cache: str, broker: str, state: str, root: Path) -> dict[str, str]:
    return {
        "WARMER_REDIS_URL": cache,
        "WARMER_BROKER_URL": broker,
        "WARMER_STATE_URL": state,
        "WARMER_STORAGE_ROOT": str(root),
        "WARMER_WEBHOOK_TOKEN": "t0ken-for-the-check",
    }


@pytest.mark.parametrize("command", [["worker"], ["webhook"], ["up"]])
def test_each_service_refuses_a_broker_on_the_caches_server(
    command: list[str], lru_port: int, queue_port: int, tmp_path: Path
) -> None:
    # The defaults' shape: cache, broker and state as DBs of one server.
    env = _env(_url(lru_port, 0), _url(lru_port, 1), _url(queue_port, 0), tmp_path)
    result = CliRunner().invoke(app, command, env=env)
    assert result.exit_code == 2, result.output
    message = result.stderr
    assert "WARMER_BROKER_URL" in message
    assert "the registry cache's Redis server" in message
    assert "allkeys-lru" in message  # why
    assert "noeviction" in message  # and how to fix
    assert OVERRIDE in message
    assert len(message.strip().splitlines()) == 1


def test_the_same_server_under_another_name_is_the_same_server(
    queue_port: int, tmp_path: Path
) -> None:
    # localhost and 127.0.0.1, DB 0 and DB 2: one server (told by its run_id), though it
    # never evicts: the registry would be told to make it evict.
    settings = load_settings(
        redis_url=_url(queue_port, 0, "localhost"),
        broker_url=_url(queue_port, 5, "127.0.0.1"),
        state_url=_url(queue_port, 2, "127.0.0.1"),
    )
    with pytest.raises(EvictingRedisError, match=r"WARMER_BROKER_URL.*cache's Redis server"):
        check_never_evicts(settings)


def test_a_state_redis_that_evicts_is_refused(
    lru_port: int, queue_port: int, tmp_path: Path
) -> None:
    env = _env(_url(queue_port, 3), _url(free_port(), 0), _url(lru_port, 2), tmp_path)
    env["WARMER_BROKER_URL"] = "amqp://guest:guest@127.0.0.1:1//"  # RabbitMQ: not checked
    result = CliRunner().invoke(app, ["worker"], env=env)
    assert result.exit_code == 2, result.output
    assert "WARMER_STATE_URL" in result.stderr
    assert "maxmemory-policy allkeys-lru" in result.stderr
    assert "CONFIG SET maxmemory-policy noeviction" in result.stderr


def test_servers_of_their_own_that_never_evict_pass(
    lru_port: int, queue_port: int, redis_proc: Any
) -> None:
    settings = load_settings(
        redis_url=_url(lru_port, 0),
        broker_url=_url(queue_port, 0),
        state_url=f"redis://{redis_proc.host}:{redis_proc.port}/{DB.STATE}",
    )
    assert eviction_problem(settings) is None
    check_never_evicts(settings)


def test_a_rabbitmq_broker_is_not_checked(lru_port: int, queue_port: int) -> None:
    settings = load_settings(
        redis_url=_url(lru_port, 0),
        broker_url="amqp://guest:guest@127.0.0.1:1//",
        state_url=_url(queue_port, 1),
    )
    check_never_evicts(settings)


def test_the_override_skips_the_check(lru_port: int) -> None:
    shared = {
        "redis_url": _url(lru_port, 0),
        "broker_url": _url(lru_port, 1),
        "state_url": _url(lru_port, 2),
    }
    with pytest.raises(EvictingRedisError):
        check_never_evicts(load_settings(**shared))
    check_never_evicts(load_settings(**shared, skip_eviction_check=True))


def test_when_nothing_answers_one_address_is_one_server() -> None:
    dead = free_port()
    settings = load_settings(
        redis_url=_url(dead, 0, "localhost"),
        broker_url=_url(dead, 1),
        state_url=_url(free_port(), 2),
    )
    with pytest.raises(EvictingRedisError, match="WARMER_BROKER_URL"):
        check_never_evicts(settings)
    # Different servers that do not answer yet: nothing to refuse, the warmer waits for them.
    check_never_evicts(
        load_settings(
            redis_url=_url(dead, 0), broker_url=_url(free_port(), 1), state_url=_url(free_port(), 2)
        )
    )


def test_the_message_shows_no_password(lru_port: int) -> None:
    url = f"redis://:s3cret-pw@127.0.0.1:{lru_port}/1"
    settings = load_settings(redis_url=_url(lru_port, 0), broker_url=url, state_url=url)
    with pytest.raises(EvictingRedisError) as caught:
        check_never_evicts(settings)
    assert "s3cret-pw" not in str(caught.value)


def test_a_url_that_is_no_url_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    env = _env(
        "redis://127.0.0.1:notaport/0", "redis://127.0.0.1:1/1", "redis://:pw@x:2/2", tmp_path
    )
    result = CliRunner().invoke(app, ["worker"], env=env)
    assert result.exit_code == 2, result.output
    assert "WARMER_REDIS_URL" in result.stderr
    assert "is not a number" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
