"""Images read from Kubernetes YAML (``warmer check -f``, ``warmer warm -f``): every container,
init container and ephemeral container of every workload kind, multi-document, ``kind: List``."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.cli.workloads import WORKLOAD_KINDS, images_in_yaml, read_images
from worker.errors import ConfigError

DATA = Path(__file__).resolve().parents[1] / "data" / "workloads.yaml"
DIGEST = "sha256:" + "a" * 64


def test_every_image_of_every_workload_kind_in_order() -> None:
    assert read_images(str(DATA)) == [
        "shop/init:1",  # Pod: init, then containers, then ephemeral
        "shop/api:2.4.1",
        "tools/debug:1",
        "shop/api:2.4.1",  # Deployment (repeats kept here: dropped by the commands)
        "registry.example.com:5000/shop/web:1",
        "shop/db:3",  # StatefulSet
        "docker.io/library/busybox:1.36",  # DaemonSet
        f"shop/rs@{DIGEST}",  # ReplicaSet
        "shop/migrate:7",  # Job
        "shop/job:1",
        "shop/cron:1",  # CronJob
        "shop/listed:1",  # a Pod in a List
    ]


def test_the_file_has_every_kind() -> None:
    text = DATA.read_text()
    assert all(f"kind: {kind}\n" in text for kind in WORKLOAD_KINDS)


def test_other_kinds_and_odd_shapes_give_nothing() -> None:
    text = """
kind: Deployment
spec: {template: {spec: {containers: [{name: x}, "junk", {image: 7}, {image: "  "}]}}}
---
kind: Deployment
spec: {template: null}
---
- a list
---
kind: Service
spec: {containers: [{image: not/this}]}
"""
    assert images_in_yaml(text) == []


def test_not_yaml_is_one_line_naming_the_source(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Pod\nspec: {containers: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml is not YAML") as caught:
        read_images(str(bad))
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="cannot read"):
        read_images(str(tmp_path / "absent.yaml"))


def test_stdin_is_read_for_dash(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    piped = tmp_path / "piped"
    piped.write_bytes(b"kind: Pod\nspec: {containers: [{image: shop/api:1}]}\n")
    with piped.open("rb") as f:
        monkeypatch.setattr("sys.stdin", type("Stdin", (), {"buffer": f})())
        assert read_images("-") == ["shop/api:1"]
