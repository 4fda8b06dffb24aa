"""deploy/monitoring, tested with the real tools: promtool checks the alert rules and runs their
unit tests (one an alert, at least), every metric the rules and the dashboard name is in the
/metrics of a running receiver, and a real Prometheus, on the example config, scrapes that
receiver, loads the rules and answers every dashboard query.

promtool and prometheus come with Debian's ``prometheus`` package; without them these tests
skip, and under ``WARMER_REQUIRE_E2E=1`` they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.redisdbs import DB, shared_env
from tests.support.services import warmer_process, webhook_ready
from worker.cli.processes import background, free_port, wait_until

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
RULES = MONITORING / "warmer-alerts.yml"
RULE_TESTS = MONITORING / "warmer-alerts.test.yml"
DASHBOARD = MONITORING / "warmer-dashboard.json"
CONFIG = MONITORING / "prometheus.yml"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (Debian: apt-get install prometheus)"
        if os.environ.get("WARMER_REQUIRE_E2E") == "1":
            pytest.fail(f"{reason} and WARMER_REQUIRE_E2E=1")
        pytest.skip(reason)
    return path


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def _metric_names(expression: str) -> set[str]:
    # The warmer's metrics (up, the one other name used, is Prometheus's own: it is there when
    # Prometheus scrapes, test_a_real_prometheus_scrapes_a_running_receiver).
    return set(re.findall(r"\bwarmer_[a-z0-9_]+\b", expression))


def _served(text: str) -> set[str]:
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_promtool_checks_the_rules_and_passes_their_unit_tests() -> None:
    promtool = _tool("promtool")
    for args in (["check", "rules", str(RULES)], ["test", "rules", str(RULE_TESTS)]):
        run = subprocess.run(
            [promtool, *args], capture_output=True, text=True, timeout=120, check=False
        )
        assert run.returncode == 0, run.stdout + run.stderr
    # Every alert has a unit test in which it fires.
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert fired == {rule["alert"] for rule in _alerts()}


def test_the_rules_and_the_dashboard_name_only_metrics_the_warmer_exports(
    receiver: str,
) -> None:
    with urllib.request.urlopen(f"{receiver}/metrics", timeout=5) as answer:
        served = _served(answer.read().decode())
    named = {name for rule in _alerts() for name in _metric_names(rule["expr"])}
    queried = {name for query in _dashboard_queries() for name in _metric_names(query)}
    assert named, "the rules name no warmer metric"
    assert queried, "the dashboard queries no warmer metric"
    assert named - served == set()
    assert queried - served == set()
    # What the SLO asks for is among them.
    for name in (
        "warmer_push_to_warm_seconds_bucket",
        "warmer_oldest_pending_event_seconds",
        "warmer_dead_lettered_total",
        "warmer_cache_hits_total",
        "warmer_audit_found_total",
    ):
        assert name in named | queried


def _query(base: str, path: str, **params: str) -> Any:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}" if params else f"{base}{path}"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)


def _scraped(base: str) -> bool:
    try:
        found = _query(base, "/api/v1/query", query="warmer_pending_events")
    except OSError:  # not listening yet
        return False
    return bool(found["data"]["result"])


def test_a_real_prometheus_scrapes_a_running_receiver(receiver: str, tmp_path: Path) -> None:
    prometheus = _tool("prometheus")
    # The example config as shipped, pointed at this receiver and scraping every second.
    config = yaml.safe_load(CONFIG.read_text())
    config["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [receiver.removeprefix("http://")]}]
    shutil.copy(RULES, tmp_path / RULES.name)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = [
        prometheus,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with background(args, {}, tmp_path / "prometheus.log"):
        wait_until(lambda: _scraped(base), timeout=60, what="Prometheus to scrape the warmer")
        (up,) = _query(base, "/api/v1/query", query='up{job="warmer"}')["data"]["result"]
        assert up["value"][1] == "1"
        groups = _query(base, "/api/v1/rules")["data"]["groups"]
        loaded = {rule["name"]: rule["health"] for g in groups for rule in g["rules"]}
        assert loaded == {rule["alert"]: "ok" for rule in _alerts()}
        for query in _dashboard_queries():
            answer = _query(base, "/api/v1/query", query=query.replace("$job", "warmer"))
            assert answer["status"] == "success", query


@pytest.fixture(scope="module")
def receiver(redis_proc: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``warmer webhook`` as a user starts it, on its own state and broker DBs."""
    env = {
        **shared_env(redis_proc, broker=DB.MONITORING_BROKER, state=DB.MONITORING_STATE),
        "WARMER_WEBHOOK_TOKEN": "monitoring-token",
    }
    dbs = [
        redis.Redis(host=redis_proc.host, port=redis_proc.port, db=db)
        for db in (DB.MONITORING_STATE, DB.MONITORING_BROKER)
    ]
    for db in dbs:
        db.flushdb()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("monitoring") / "webhook.log"
    with warmer_process(["webhook", "--port", str(port)], env, log):
        wait_until(lambda: webhook_ready(url), timeout=30, what="the receiver's /readyz")
        yield url
    for db in dbs:
        db.flushdb()
        db.close()
