"""WARMER_REGISTRY_CONFIG and WARMER_STORAGE_URL: the warmer configured from the registry's own
config.yml, with the registry's REGISTRY_ overrides applied as the registry applies them."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.config.connections import parse_redis_url
from worker.config.registryfile import apply_overrides, read_registry_config, registry_config
from worker.config.settings import load_settings
from worker.config.storageurl import parse_storage_url, s3_url
from worker.errors import ConfigError
from worker.registry.versions import RegistryVersion

S3_CONFIG = """version: 0.1
storage:
  cache: {blobdescriptor: redis}
  delete: {enabled: true}
  s3:
    bucket: registry-bucket
    region: eu-west-1
    regionendpoint: http://minio:9000
    rootdirectory: /reg/root
    accesskey: AKIA/EXAMPLE
    secretkey: se+cret/key
    forcepathstyle: true
redis:
  addrs: [cache:6379]
  db: 3
  password: p@ss
http: {addr: ":5000"}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(text)
    return path


def test_an_s3_registry_config_gives_storage_redis_and_version(tmp_path: Path) -> None:
    values = read_registry_config(_write(tmp_path, S3_CONFIG), {})
    target = parse_storage_url(values["storage_url"])
    assert (target.driver, target.bucket, target.root) == ("s3", "registry-bucket", "reg/root")
    assert (target.region, target.endpoint, target.path_style) == (
        "eu-west-1",
        "http://minio:9000",
        True,
    )
    assert (target.access_key, target.secret_key) == ("AKIA/EXAMPLE", "se+cret/key")
    redis = parse_redis_url(values["redis_url"])
    assert (redis.hosts, redis.db, redis.password) == ((("cache", 6379),), 3, "p@ss")
    assert values["registry_version"] == "3"


def test_registry_overrides_apply_as_the_registry_applies_them(tmp_path: Path) -> None:
    env = {
        "REGISTRY_STORAGE_S3_BUCKET": "other-bucket",
        "REGISTRY_STORAGE_S3_ROOTDIRECTORY": "/elsewhere",
        "REGISTRY_REDIS_ADDRS": "[s1:26379, s2:26379]",
        "REGISTRY_REDIS_MASTERNAME": "cache",
        "REGISTRY_REDIS_TLS_ROOTCAS": "[/ca.pem]",
        "PATH": "/bin",
    }
    values = read_registry_config(_write(tmp_path, S3_CONFIG), env)
    target = parse_storage_url(values["storage_url"])
    assert (target.bucket, target.root) == ("other-bucket", "elsewhere")
    redis = parse_redis_url(values["redis_url"])
    assert redis.kind == "sentinel"
    assert redis.master_name == "cache"
    assert redis.ssl
    assert redis.hosts == (("s1", 26379), ("s2", 26379))
    assert redis.tls["ssl_ca_certs"] == "/ca.pem"


def test_a_bare_driver_override_replaces_the_storage_section() -> None:
    config = {"storage": {"filesystem": {"rootdirectory": "/x"}}}
    env = {"REGISTRY_STORAGE": "s3", "REGISTRY_STORAGE_S3_BUCKET": "b-1"}
    assert apply_overrides(config, env)["storage"] == {"s3": {"bucket": "b-1"}}


def test_a_2x_config_and_the_filesystem_default(tmp_path: Path) -> None:
    text = "version: 0.1\nstorage:\n  filesystem: {}\nredis:\n  addr: r:6380\n  db: 2\n"
    values = read_registry_config(_write(tmp_path, text), {})
    assert values == {
        "storage_url": "file:///var/lib/registry",
        "redis_url": "redis://r:6380/2",
        "registry_version": "2",
    }


@pytest.mark.parametrize("driver", ["gcs", "azure", "swift"])
def test_unsupported_drivers_are_refused_by_name(tmp_path: Path, driver: str) -> None:
    path = _write(tmp_path, f"version: 0.1\nstorage:\n  {driver}: {{bucket: b}}\n")
    with pytest.raises(ConfigError, match=f"stores in '{driver}'.*filesystem and s3"):
        load_settings(registry_config=str(path))


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="WARMER_REGISTRY_CONFIG: cannot read"):
        load_settings(registry_config=str(tmp_path / "nope.yml"))


def test_explicit_warmer_settings_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, S3_CONFIG)
    monkeypatch.setenv("WARMER_REGISTRY_CONFIG", str(path))
    monkeypatch.setenv("WARMER_REDIS_URL", "redis://mine:6379/9")
    monkeypatch.setenv("WARMER_STORAGE_ROOT", "/srv/mine")
    monkeypatch.setenv("REGISTRY_STORAGE_S3_BUCKET", "overridden")
    settings = load_settings()
    assert settings.redis_url == "redis://mine:6379/9"
    assert settings.storage_url is None
    assert settings.storage is not None
    assert settings.storage.root == "/srv/mine"
    assert settings.registry_version is RegistryVersion.V3  # from the config: not set here
    monkeypatch.delenv("WARMER_STORAGE_ROOT")
    settings = load_settings()
    assert settings.storage is not None
    assert settings.storage.bucket == "overridden"
    assert "se+cret" not in repr(settings)
    assert "se%2Bcret" not in repr(settings)


def test_storage_urls_are_checked_at_start() -> None:
    for bad in ("gs://bucket/x", "s3:///root", "file://relative/x", "s3://b/x?colour=red"):
        with pytest.raises(ConfigError, match="WARMER_STORAGE_URL"):
            load_settings(storage_url=bad)
    with pytest.raises(ConfigError, match="set one of them"):
        load_settings(storage_url="s3://bucket/x", storage_root="/srv")
    url = s3_url("b-1", "/a/b", endpoint="http://h:1", path_style=False, verify=False)
    target = parse_storage_url(url)
    assert (target.root, target.endpoint, target.path_style, target.verify) == (
        "a/b",
        "http://h:1",
        False,
        False,
    )
    assert parse_storage_url("file:///srv/reg").root == "/srv/reg"


def test_the_snippet_of_an_s3_warmer_has_an_s3_section() -> None:
    target = parse_storage_url(s3_url("b-1", "/r", endpoint="http://m:9000", region="r1"))
    text = registry_config(
        version=RegistryVersion.V3, root="/unused", redis_url="redis://c:6379/0", storage=target
    )
    assert "  s3:\n    bucket: b-1\n    region: r1\n    regionendpoint: http://m:9000\n" in text
    assert "rootdirectory: /r" in text
    assert "forcepathstyle: true" in text
    assert "filesystem" not in text
    plain = registry_config(version=RegistryVersion.V3, root="/srv", redis_url="redis://c/0")
    assert "  filesystem:\n    rootdirectory: /srv\n" in plain
