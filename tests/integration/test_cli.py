"""The ``warmer`` command line: answers, JSON, exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from bench.layout import LayoutWriter
from tests.support.redisdbs import DB, shared_env
from tests.support.registry import free_port
from worker.cli import app
from worker.core.heal import REWARM_LOCK
from worker.state import StateStore

ABSENT = "sha256:" + "0" * 64


@pytest.fixture
def env(redis_proc: Any, cache_redis: redis.Redis, layout: LayoutWriter) -> dict[str, str]:
    layout.store.root.mkdir(parents=True, exist_ok=True)
    # Every Redis the command may reach is the session's: a rewarm records its summary in the
    # state Redis, which would otherwise be the machine's localhost:6379 by default.
    return {**shared_env(redis_proc), "WARMER_STORAGE_ROOT": str(layout.store.root)}


def _run(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(app, list(args), env=env)


def _last_json(output: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return data


def test_fetch_then_exists_in_json(env: dict[str, str], layout: LayoutWriter) -> None:
    digest = layout.blob(b"payload")
    layout.link("team/app", digest)
    first = _last_json(_run(env, "fetch", "team/app", digest, "--json").stdout)
    assert (first["size"], first["hit"]) == (7, False)
    assert first["counters"]["fetch"] == {"requests": 1, "hits": 0, "misses": 1}
    second = _last_json(_run(env, "fetch", "team/app", digest, "--json").stdout)
    assert second["hit"] is True
    result = _run(env, "exists", "team/app", digest, "--json")
    assert result.exit_code == 0
    assert _last_json(result.stdout)["exists"] is True


def test_human_output_says_where_the_answer_came_from(
    env: dict[str, str], layout: LayoutWriter
) -> None:
    digest = layout.blob(b"payload")
    layout.link("team/app", digest)
    assert "miss (warmed from the store)" in _run(env, "fetch", "team/app", digest).stdout
    assert "hit" in _run(env, "fetch", "team/app", digest).stdout
    assert "exists (cache)" in _run(env, "exists", "team/app", digest).stdout


def test_absent_blobs_exit_1(env: dict[str, str]) -> None:
    assert _run(env, "exists", "team/app", ABSENT).exit_code == 1
    result = _run(env, "fetch", "team/app", ABSENT, "--json")
    assert result.exit_code == 1
    assert "not linked" in _last_json(result.stdout)["error"]


def test_invalid_input_exits_2_with_one_line(env: dict[str, str]) -> None:
    result = _run(env, "fetch", "team/app", "sha256:nope")
    assert result.exit_code == 2
    assert "invalid digest" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_rewarm_json_summary(env: dict[str, str], layout: LayoutWriter) -> None:
    layout.image("team/app", "v1", b"a", b"b")
    layout.image("other", "v1", b"a")
    result = _run(env, "rewarm", "--json")
    assert result.exit_code == 0, result.stderr
    summary = _last_json(result.stdout)
    assert {
        k: summary[k] for k in ("repositories", "blobs", "manifests", "hits", "misses", "errors")
    } == {
        "repositories": 2,
        "blobs": 5,
        "manifests": 2,
        "hits": 0,
        "misses": 7,
        "errors": 0,
    }
    assert summary["seconds"] >= 0
    only = _last_json(_run(env, "rewarm", "--repo", "other", "--json").stdout)
    assert (only["repositories"], only["hits"]) == (1, 3)


def test_rewarm_enqueue_points_at_stats_and_says_when_it_will_be_skipped(
    env: dict[str, str], redis_proc: Any, state: StateStore
) -> None:
    broker = redis.Redis(host=redis_proc.host, port=redis_proc.port, db=DB.BROKER)
    try:
        first = _run(env, "rewarm", "--enqueue")
        assert first.exit_code == 0, first.stderr
        assert "`warmer stats` shows the run's progress" in first.stdout
        assert "skipped" not in first.stderr
        assert state.acquire_lock(REWARM_LOCK, "run-1", 30)  # another re-warm under way
        second = _run(env, "rewarm", "--enqueue", "--json")
        assert second.exit_code == 0, second.stderr  # sent all the same
        assert "task_id" in _last_json(second.stdout)
        assert "another re-warm (run-1) is running: this one will be skipped" in second.stderr
    finally:
        broker.flushdb()  # no worker of a later test takes these re-warms
        broker.close()


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"WARMER_STORAGE_ROOT": "/nonexistent/root"}, "storage root /nonexistent/root"),
        ({"WARMER_STORAGE_ROOT": ""}, "WARMER_STORAGE_ROOT"),
        ({"WARMER_SCHEMA": "v3"}, "WARMER_SCHEMA"),
    ],
)
def test_rewarm_refuses_bad_configuration_in_one_line(
    env: dict[str, str], override: dict[str, str], needle: str
) -> None:
    result = _run({**env, **override}, "rewarm")
    assert result.exit_code == 2
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_rewarm_with_unreachable_redis_exits_2_naming_it(env: dict[str, str]) -> None:
    port = free_port()
    result = _run({**env, "WARMER_REDIS_URL": f"redis://127.0.0.1:{port}/0"}, "rewarm")
    assert result.exit_code == 2
    assert f"127.0.0.1:{port}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_installed_console_script_keeps_stdout_for_results(
    env: dict[str, str], layout: LayoutWriter
) -> None:
    layout.image("team/app", "v1", b"a")
    warmer = Path(sys.executable).with_name("warmer")
    proc = subprocess.run(
        [str(warmer), "rewarm", "--json"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert _last_json(proc.stdout)["blobs"] == 2
    assert proc.stderr == ""  # not a terminal: no progress bar


@pytest.mark.parametrize(
    ("variable", "value"),
    [("WARMER_REWARM_SCHEDULE", "61 * * * *"), ("WARMER_RECONCILE_SCHEDULE", "0 4 * 13 *")],
)
def test_a_crontab_out_of_range_is_one_line_naming_the_variable(
    env: dict[str, str], variable: str, value: str
) -> None:
    result = _run({**env, variable: value}, "stats")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output  # no traceback
    assert variable in lines[0]


@pytest.mark.parametrize("command", [["webhook"], ["up", "--dev"]])
def test_a_port_in_use_is_one_line_and_nothing_starts(
    env: dict[str, str], command: list[str]
) -> None:
    holder = socket.create_server(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    env = {**env, "WARMER_WEBHOOK_TOKEN": "t0ken-for-the-port-check-000000"}
    with holder:
        result = _run(env, *command, "--port", str(port))
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in last
    assert "Traceback" not in result.output


def test_shell_completion_completes_commands_and_options() -> None:
    # What bash's completion function runs (warmer --install-completion writes it).
    warmer = str(Path(sys.executable).with_name("warmer"))
    for words, cword, expected in (
        ("warmer fs", "1", "fsck"),
        ("warmer fsck --re", "2", "--repair"),
    ):
        env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": cword}
        env["_WARMER_COMPLETE"] = "complete_bash"
        shown = subprocess.run([warmer], env=env, capture_output=True, text=True, check=False)
        assert shown.stdout.split() == [expected], shown
