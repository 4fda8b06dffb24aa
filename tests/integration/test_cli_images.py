"""``warmer check`` and ``warmer warm`` on a real Redis and a real storage tree: exit statuses,
JSON, one-line reasons, ``-f`` YAML (stdin too), skips of other registries, duplicates once,
and ``--enqueue`` as a task an image run by a real Celery worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from typer.testing import CliRunner

from bench.layout import LayoutWriter
from tasks import worker_app
from tests.support.redisdbs import DB, shared_env
from tests.support.redisdump import dump
from worker.cli import app
from worker.config.settings import load_settings

REPO = "shop/api"
HOST = "registry.example.com:5000"
DATA = Path(__file__).resolve().parents[1] / "data" / "workloads.yaml"


@pytest.fixture
def env(redis_proc: Any, cache_redis: redis.Redis, layout: LayoutWriter) -> dict[str, str]:
    layout.store.root.mkdir(parents=True, exist_ok=True)
    return {
        **shared_env(redis_proc, broker=DB.IMAGES_BROKER),
        "WARMER_STORAGE_ROOT": str(layout.store.root),
        "WARMER_REGISTRY_HOSTS": HOST,
    }


@pytest.fixture
def multi(layout: LayoutWriter) -> dict[str, str]:
    amd, _ = layout.image(REPO, "amd64", b"shared", b"amd64 layer")
    arm, _ = layout.image(REPO, "arm64", b"shared", b"arm64 layer")
    index = layout.index(REPO, "2.4.1", ("linux/amd64", amd), ("linux/arm64", arm))
    return {"index": index, "amd": amd, "arm": arm}


def _run(env: dict[str, str], *args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), env=env, input=stdin)


def _json(result: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def test_check_says_cold_then_warm_after_warm(
    env: dict[str, str], multi: dict[str, str], cache_redis: redis.Redis
) -> None:
    cold = _run(env, "check", f"{REPO}:2.4.1", "--json")
    assert cold.exit_code == 1, cold.stderr
    report = _json(cold)
    assert report["warm"] is False
    assert [p["platform"] for p in report["images"][0]["platforms"]] == [
        "linux/amd64",
        "linux/arm64",
    ]
    assert all(p["cold"] == p["blobs"] == 5 for p in report["images"][0]["platforms"])
    assert dump(cache_redis) == {}  # a check writes nothing

    warmed = _run(env, "warm", f"{HOST}/{REPO}:2.4.1", "--json")
    assert warmed.exit_code == 0, warmed.stderr
    assert _json(warmed)["images"][0]["digest"] == multi["index"]

    warm = _run(env, "check", f"{REPO}:2.4.1", "--json")
    assert warm.exit_code == 0, warm.stderr
    assert _json(warm)["warm"] is True
    table = _run(env, "check", f"{REPO}:2.4.1").stdout
    assert "linux/amd64" in table
    assert "linux/arm64" in table


def test_platform_limits_warm_and_check(env: dict[str, str], multi: dict[str, str]) -> None:
    assert _run(env, "warm", f"{REPO}:2.4.1", "--platform", "linux/arm64").exit_code == 0
    assert _run(env, "check", f"{REPO}:2.4.1", "--platform", "linux/arm64").exit_code == 0
    assert _run(env, "check", f"{REPO}:2.4.1", "--platform", "linux/amd64").exit_code == 1
    assert _run(env, "check", f"{REPO}:2.4.1").exit_code == 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([f"{REPO}:9.9"], "no tag '9.9'"),
        (["docker.io/library/nginx:1"], "names registry docker.io, not this one"),
        (["shop/API:1"], "must be lowercase"),
        ([f"{REPO}:2.4.1", "--platform", "linux"], "invalid platform"),
        ([f"{REPO}:2.4.1", "--platform", "linux/s390x"], "no platform linux/s390x"),
        ([], "no image references given"),
        (["-f", "/nonexistent.yaml"], "cannot read /nonexistent.yaml"),
    ],
)
@pytest.mark.parametrize("command", ["check", "warm"])
def test_what_cannot_be_checked_or_warmed_exits_2_with_one_line(
    env: dict[str, str], multi: dict[str, str], command: str, args: list[str], needle: str
) -> None:
    result = _run(env, command, *args)
    assert result.exit_code == 2, result.stdout
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_one_image_that_cannot_be_checked_does_not_hide_the_others(
    env: dict[str, str], multi: dict[str, str]
) -> None:
    result = _run(env, "check", f"{REPO}:2.4.1", f"{REPO}:nope", "--json")
    assert result.exit_code == 2
    report = _json(result)
    assert [i["reference"] for i in report["images"]] == [f"{REPO}:2.4.1"]
    assert report["errors"] == [
        {"reference": f"{REPO}:nope", "error": "shop/api has no tag 'nope'"}
    ]
    assert result.stderr.strip() == f"warmer: error: {REPO}:nope: shop/api has no tag 'nope'"


def test_yaml_files_and_stdin_skip_other_registries_and_warm_each_image_once(
    env: dict[str, str], layout: LayoutWriter
) -> None:
    # The images of tests/data/workloads.yaml this registry holds.
    for text in ("init:1", "api:2.4.1", "db:3", "migrate:7", "job:1", "cron:1", "listed:1"):
        name, tag = text.split(":")
        layout.image(f"shop/{name}", tag, text.encode())
    layout.image("shop/web", "1", b"web")
    layout.image("tools/debug", "1", b"debug")
    rs, _ = layout.image("shop/rs", "x", b"rs")
    text = DATA.read_text().replace("sha256:" + "a" * 64, rs)
    (Path(env["WARMER_STORAGE_ROOT"]).parent / "w.yaml").write_text(text)
    workloads = str(Path(env["WARMER_STORAGE_ROOT"]).parent / "w.yaml")

    cold = _run(env, "check", "-f", workloads, "--json")
    assert cold.exit_code == 1, cold.stderr
    assert _json(cold)["skipped"] == 1  # docker.io's busybox
    assert "docker.io/library/busybox:1.36" in cold.stderr
    warmed = _run(env, "warm", "-f", "-", "--json", stdin=text)
    assert warmed.exit_code == 0, warmed.stderr
    report = _json(warmed)
    # 12 images in the file: shop/api:2.4.1 twice (warmed once), busybox skipped
    assert len(report["images"]) == 10
    assert report["skipped"] == 1
    again = _run(env, "check", "-f", workloads, f"{HOST}/shop/api", "shop/api:2.4.1", "--json")
    assert _json(again)["warm"] is False  # shop/api:latest does not exist
    assert again.exit_code == 2
    assert _run(env, "check", "-f", workloads).exit_code == 0


def test_an_invalid_image_in_a_file_names_the_file(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Pod\nspec: {containers: [{image: 'shop/API:1'}, {image: 'a//b'}]}\n")
    result = _run(env, "warm", "-f", str(bad))
    assert result.exit_code == 2
    assert f"{bad}: image reference 'shop/API:1': repository name must be" in result.stderr


@pytest.fixture
def broker(redis_proc: Any) -> Iterator[redis.Redis]:
    client = redis.Redis(host=redis_proc.host, port=redis_proc.port, db=DB.IMAGES_BROKER)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_enqueue_sends_a_task_an_image_that_a_worker_runs(
    env: dict[str, str],
    multi: dict[str, str],
    layout: LayoutWriter,
    broker: redis.Redis,
    state_redis: redis.Redis,
) -> None:
    layout.image("shop/web", "1", b"web")
    sent = _run(env, "warm", "--enqueue", f"{REPO}:2.4.1", "shop/web:1", "shop/web", "--json")
    assert sent.exit_code == 0, sent.stderr
    tasks = _json(sent)["tasks"]
    assert [t["reference"] for t in tasks] == [f"{REPO}:2.4.1", "shop/web:1", "shop/web"]
    settings = load_settings(
        redis_url=env["WARMER_REDIS_URL"],
        state_url=env["WARMER_STATE_URL"],
        broker_url=env["WARMER_BROKER_URL"],
        storage_root=env["WARMER_STORAGE_ROOT"],
        registry_hosts=HOST,
    )
    worker = worker_app(settings)
    worker.conf.worker_hijack_root_logger = False
    with start_worker(worker, pool="solo", perform_ping_check=False):
        results = [worker.AsyncResult(t["task_id"]) for t in tasks]
        done = results[0].get(timeout=30), results[1].get(timeout=30)
        with pytest.raises(Exception, match="no tag 'latest'"):
            results[2].get(timeout=30, propagate=True)
    assert done[0]["digest"] == multi["index"]
    assert done[0]["platforms"] == ["linux/amd64", "linux/arm64"]
    assert done[1]["warmed"] == 3
    assert _run(env, "check", f"{REPO}:2.4.1", "shop/web:1").exit_code == 0


def test_a_file_of_other_registries_images_only_checks_nothing_and_exits_2(
    env: dict[str, str], tmp_path: Path
) -> None:
    # A deploy gate (`warmer check -f app.yaml && deploy`) must not pass on nothing checked.
    workloads = tmp_path / "app.yaml"
    pod = "kind: Pod\nspec:\n  containers:\n    - name: a\n      image: elsewhere.example.com/x:1\n"
    workloads.write_text(pod)
    result = _run(env, "check", "-f", str(workloads), "--json")
    assert result.exit_code == 2, result.stdout
    assert "no image of this registry to check" in result.stderr
