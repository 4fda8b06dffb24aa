"""NAME_FILE=PATH: secrets read from files, as compose and Kubernetes mount them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from worker.config.settings import load_settings, warn_unknown_variables
from worker.errors import ConfigError

S3_CONFIG = """version: 0.1
storage:
  cache: {blobdescriptor: redis}
  s3: {bucket: b, region: us-east-1, regionendpoint: "http://minio:9000", rootdirectory: /r}
redis: {addrs: ["cache:6379"], db: 0}
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env


def _secret(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_the_token_password_and_a_url_come_from_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A file as `echo token > file` writes it: its last newline is no part of the value.
    token = _secret(tmp_path, "token", "Ab0-._~+/x==\n")
    monkeypatch.setenv("WARMER_WEBHOOK_TOKEN_FILE", token)
    monkeypatch.setenv("FLOWER_PASSWORD_FILE", _secret(tmp_path, "pw", "pass word"))
    monkeypatch.setenv("WARMER_BROKER_URL_FILE", _secret(tmp_path, "url", "redis://:pw@b:6379/0"))
    settings = load_settings()
    assert settings.webhook_token is not None
    assert settings.webhook_token.get_secret_value() == "Ab0-._~+/x=="
    assert settings.flower_password is not None
    assert settings.flower_password.get_secret_value() == "pass word"
    assert settings.broker_url == "redis://:pw@b:6379/0"
    # Not an unknown variable.
    assert warn_unknown_variables({"WARMER_WEBHOOK_TOKEN_FILE": token}) == []


def test_a_value_given_to_load_settings_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WARMER_WEBHOOK_TOKEN_FILE", _secret(tmp_path, "token", "from-file-1"))
    settings = load_settings(webhook_token="given-1")
    assert settings.webhook_token is not None
    assert settings.webhook_token.get_secret_value() == "given-1"


def test_both_set_must_agree(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # `warmer up` hands its children the variable beside the _FILE one: the same value.
    monkeypatch.setenv("WARMER_WEBHOOK_TOKEN_FILE", _secret(tmp_path, "token", "same-1\n"))
    monkeypatch.setenv("WARMER_WEBHOOK_TOKEN", "same-1")
    assert load_settings().webhook_token is not None
    monkeypatch.setenv("WARMER_WEBHOOK_TOKEN", "other-1")
    with pytest.raises(ConfigError, match="WARMER_WEBHOOK_TOKEN and WARMER_WEBHOOK_TOKEN_FILE"):
        load_settings()


def test_an_unreadable_file_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLOWER_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"^FLOWER_PASSWORD_FILE: cannot read .*missing"):
        load_settings()


def test_a_refused_secret_from_a_file_is_never_echoed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WARMER_WEBHOOK_TOKEN_FILE", _secret(tmp_path, "token", "bad token&1"))
    with pytest.raises(ConfigError, match="WARMER_WEBHOOK_TOKEN") as refused:
        load_settings()
    assert "bad token" not in str(refused.value)


def test_the_registry_s3_keys_come_from_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "config.yml"
    config.write_text(S3_CONFIG)
    monkeypatch.setenv("WARMER_REGISTRY_CONFIG", str(config))
    monkeypatch.setenv("REGISTRY_STORAGE_S3_ACCESSKEY_FILE", _secret(tmp_path, "ak", "user-1\n"))
    monkeypatch.setenv("REGISTRY_STORAGE_S3_SECRETKEY_FILE", _secret(tmp_path, "sk", "key-1\n"))
    with caplog.at_level(logging.WARNING):
        storage = load_settings().storage
    assert storage is not None
    assert (storage.bucket, storage.access_key, storage.secret_key) == ("b", "user-1", "key-1")
    assert "_FILE" not in caplog.text
