"""WARMER_REGISTRY_CONFIG pointed at the config.yml Harbor generates for its registry container
(tests/data/harbor-registry-config*.yml, rendered from goharbor/harbor's
make/photon/prepare/templates/registry/config.yml.jinja at commit 0063430f, the v2.7 line, and
its get_storage_provider_info in make/photon/prepare/utils/registry.py), with the REGISTRY_
variables Harbor's deployments set beside it (harbor-helm's registry Secret:
REGISTRY_REDIS_PASSWORD, REGISTRY_STORAGE_S3_ACCESSKEY, REGISTRY_STORAGE_S3_SECRETKEY,
REGISTRY_HTTP_SECRET)."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.config.connections import parse_redis_url
from worker.config.registryfile import read_registry_config
from worker.config.settings import load_settings
from worker.config.storageurl import parse_storage_url

DATA = Path(__file__).resolve().parents[1] / "data"
FILESYSTEM = DATA / "harbor-registry-config.yml"
S3 = DATA / "harbor-registry-config-s3.yml"


def test_harbors_filesystem_config_gives_its_storage_and_its_cache_db() -> None:
    env = {"REGISTRY_HTTP_SECRET": "s3cret", "REGISTRY_REDIS_PASSWORD": "redis-pass"}
    values = read_registry_config(FILESYSTEM, env)
    assert parse_storage_url(values["storage_url"]).root == "/storage"  # Harbor's mount
    redis = parse_redis_url(values["redis_url"])
    assert (redis.kind, redis.hosts, redis.db, redis.password) == (
        "server",
        (("redis", 6379),),
        1,  # Harbor's registry DB (redis_db_index_reg), beside core's 0 and jobservice's 2
        "redis-pass",
    )
    assert values["registry_version"] == "2"  # Harbor's registry is distribution 2.8


def test_harbors_s3_config_with_its_secret_overrides() -> None:
    env = {"REGISTRY_STORAGE_S3_ACCESSKEY": "AK", "REGISTRY_STORAGE_S3_SECRETKEY": "S/K+"}
    values = read_registry_config(S3, env)
    target = parse_storage_url(values["storage_url"])
    assert (target.driver, target.bucket, target.root, target.region) == (
        "s3",
        "harbor-images",
        "harbor",
        "us-east-1",
    )
    assert target.endpoint == "http://minio.example.internal:9000"
    assert (target.access_key, target.secret_key, target.verify) == ("AK", "S/K+", True)


def test_harbors_sentinel_addr_and_master_set() -> None:
    # Harbor's template: "addr: s0:26379,s1:26379" and "sentinelMasterSet: NAME".
    redis = parse_redis_url(read_registry_config(S3, {})["redis_url"])
    assert redis.kind == "sentinel"
    assert (redis.master_name, redis.db, redis.password) == ("mymaster", 2, "redis-secret")
    assert redis.hosts == (("sentinel-0", 26379), ("sentinel-1", 26379), ("sentinel-2", 26379))


def test_harbors_patched_sentinel_section(tmp_path: Path) -> None:
    # Harbor's later redis.patch of distribution (commit 55de9252): "sentinel: {masterName,
    # addresses}".
    text = FILESYSTEM.read_text().replace(
        "  addr: redis:6379\n",
        "  sentinel:\n    masterName: harbor\n    addresses: [sen-a:26379, sen-b:26379]\n",
    )
    path = tmp_path / "config.yml"
    path.write_text(text)
    redis = parse_redis_url(read_registry_config(path, {})["redis_url"])
    assert (redis.kind, redis.master_name, redis.db) == ("sentinel", "harbor", 1)
    assert redis.hosts == (("sen-a", 26379), ("sen-b", 26379))


def test_the_warmer_settings_read_harbors_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARMER_REGISTRY_CONFIG", str(FILESYSTEM))
    monkeypatch.setenv("REGISTRY_REDIS_PASSWORD", "pw")
    settings = load_settings()
    assert settings.redis_url == "redis://:pw@redis:6379/1"
    assert settings.registry_version.value.startswith("2")
    assert settings.storage_url == "file:///storage"
