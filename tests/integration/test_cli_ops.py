"""``warmer deadletter`` and Celery's own command line on ``worker.celery``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
from typer.testing import CliRunner

from tests.support.notifications import event
from tests.support.redisdbs import DB, shared_env
from worker.cli import app
from worker.state import StateStore

D = "sha256:" + "d" * 64


def _env(redis_proc: Any, tmp_path: Path) -> dict[str, str]:
    return {**shared_env(redis_proc), "WARMER_STORAGE_ROOT": str(tmp_path)}


def test_deadletter_list_replay_purge(
    redis_proc: Any, state: StateStore, state_redis: redis.Redis, tmp_path: Path
) -> None:
    env = _env(redis_proc, tmp_path)
    broker = redis.Redis(host=redis_proc.host, port=redis_proc.port, db=DB.BROKER)
    broker.flushdb()
    state.dead_letter(
        [
            ("cache down", ["e1", "warm-blob", "team/app", D]),
            ("bad name", event("push", "Bad Name", D, event_id="e2")),
        ]
    )
    runner = CliRunner()
    listed = runner.invoke(app, ["deadletter", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.stderr
    lines = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [entry["reason"] for entry in lines] == ["cache down", "bad name"]
    shown = runner.invoke(app, ["deadletter", "list"], env=env).stdout
    assert "2 dead letters" in shown
    assert "when (UTC)" in shown
    assert time.strftime("%Y-%m-%d", time.gmtime()) in shown  # each letter's day

    replayed = runner.invoke(app, ["deadletter", "replay"], env=env)
    assert replayed.exit_code == 0, replayed.stderr
    assert "replayed 1, still refused 1" in replayed.stdout
    assert broker.llen("celery") == 1  # one task, holding the valid event
    assert state.pending_count() == 1

    assert runner.invoke(app, ["deadletter", "purge"], env=env, input="n\n").exit_code == 1
    assert state.dead_letter_count() == 1
    purged = runner.invoke(app, ["deadletter", "purge", "--yes"], env=env)
    assert "purged 1" in purged.stdout
    assert state.dead_letter_count() == 0
    broker.flushdb()


def test_celery_command_line_finds_the_app_and_its_tasks(redis_proc: Any, tmp_path: Path) -> None:
    celery = str(Path(sys.executable).with_name("celery"))
    proc = subprocess.run(
        [celery, "-A", "worker.celery", "report"],
        env={**os.environ, **_env(redis_proc, tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "warmer" in proc.stdout


def test_webhook_refuses_to_start_without_a_token(redis_proc: Any, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["webhook"], env=_env(redis_proc, tmp_path))
    assert result.exit_code == 2
    assert "WARMER_WEBHOOK_TOKEN is not set" in result.stderr
    assert "--insecure-no-auth" in result.stderr


def test_worker_refuses_to_start_without_a_storage_root(redis_proc: Any, tmp_path: Path) -> None:
    env = {**_env(redis_proc, tmp_path), "WARMER_STORAGE_ROOT": str(tmp_path / "missing")}
    result = CliRunner().invoke(app, ["worker"], env=env)
    assert result.exit_code == 2
    assert "does not exist" in result.stderr
