"""Flower on the warmer's app: it shows the warmer's tasks and their counters (its HTTP API)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from bench.layout import LayoutWriter
from tests.support.redisdbs import DB, shared_env
from tests.support.registry import free_port
from tests.support.services import warmer_process
from worker.celeryapp import create_app
from worker.celeryapp.names import EVENTS_TASK, WARM_IMAGE_TASK
from worker.cli import app as cli
from worker.cli.processes import wait_until
from worker.config.settings import load_settings
from worker.registry.events import Event, Kind

AUTH = "admin:flower-test"


def _api(port: int, path: str) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        headers={"authorization": "Basic " + base64.b64encode(AUTH.encode()).decode()},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return json.load(resp)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def test_flower_lists_the_warmers_tasks_with_their_counters(
    redis_proc: Any,
    layout: LayoutWriter,
    cache_redis: redis.Redis,
    state_redis: redis.Redis,
    tmp_path: Path,
) -> None:
    manifest, blobs = layout.image("team/app", "v1", b"a", b"b")
    env = {
        **shared_env(redis_proc, broker=DB.FLOWER_BROKER),
        "WARMER_STORAGE_ROOT": str(layout.store.root),
    }
    redis.Redis(host=redis_proc.host, port=redis_proc.port, db=DB.FLOWER_BROKER).flushdb()
    port = free_port()
    warmer = str(Path(sys.executable).with_name("warmer"))
    flower = [warmer, "flower", f"--port={port}", "--address=127.0.0.1"]
    user, password = AUTH.split(":")
    env |= {"FLOWER_USER": user, "FLOWER_PASSWORD": password}
    log = tmp_path / "flower.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            flower,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        worker = ["worker", "--pool", "solo", "--without-mingle", "--without-gossip"]
        with warmer_process(worker, env, tmp_path / "worker.log"):
            wait_until(
                lambda: bool(_api(port, "/api/workers?refresh=1")),
                timeout=60,
                what="Flower to see the worker",
            )
            app = create_app(
                load_settings(**{k.removeprefix("WARMER_").lower(): v for k, v in env.items()})
            )
            message = Event("f1", Kind.WARM_MANIFEST, "team/app", manifest).as_message()
            # The worker sends task events once Flower has turned them on (Flower does so every
            # 5 s in each worker it sees): a task sent before that is not shown, so one more is
            # published, as the receiver publishes, every half second until Flower shows one
            # succeeded.
            last_sent = 0.0

            def succeeded() -> list[dict[str, Any]]:
                tasks = (_api(port, "/api/tasks") or {}).values()
                return [t for t in tasks if t.get("state") == "SUCCESS"]

            def done() -> bool:
                nonlocal last_sent
                if succeeded():
                    return True
                if time.monotonic() - last_sent > 0.5:
                    app.context.publish([message])
                    last_sent = time.monotonic()
                return False

            wait_until(done, timeout=60, what="Flower to show a task succeeded")
            task = succeeded()[0]
            # warmer warm --enqueue: a warmer.warm_image task an image, which Flower shows too.
            sent = subprocess.run(
                [warmer, "warm", "--enqueue", "team/app:v1", "--json"],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            (warm_task,) = json.loads(sent.stdout.splitlines()[-1])["tasks"]
            wait_until(
                lambda: any(t.get("uuid") == warm_task["task_id"] for t in succeeded()),
                timeout=60,
                what="Flower to show the warm_image task succeeded",
            )
            shown = next(t for t in succeeded() if t.get("uuid") == warm_task["task_id"])
    finally:
        proc.terminate()
        proc.wait(20)
    assert task["name"] == EVENTS_TASK
    assert task["args"].startswith("[1 event: ['f1', ")  # the batch, said short
    # The first task misses (a cold cache), any later one hits: four lookups either way.
    assert "'fetch': {'requests': 4," in task["result"]
    assert len(blobs) == 3
    assert shown["name"] == WARM_IMAGE_TASK
    assert "team/app:v1" in shown["args"]
    assert "'warmed': 4" in shown["result"]  # config, two layers, the manifest


@pytest.mark.parametrize(
    ("password", "said"),
    [("", "FLOWER_USER and FLOWER_PASSWORD must be set"), ("change-me", "placeholder")],
)
def test_flower_refuses_to_start_without_a_real_password(password: str, said: str) -> None:
    env = {"FLOWER_USER": "admin", "FLOWER_PASSWORD": password}
    result = CliRunner().invoke(cli, ["flower"], env=env)
    assert result.exit_code == 2, result.output
    assert said in result.stderr
