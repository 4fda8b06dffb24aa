"""The registry's redis: section, written from the warmer's cache URL for each registry version."""

from __future__ import annotations

import pytest
import yaml

from worker.config.registryfile import redis_section, registry_config
from worker.errors import ConfigError
from worker.registry.versions import RegistryVersion

V2, V3 = RegistryVersion.V2, RegistryVersion.V3


def _redis(version: RegistryVersion, url: str, **kwargs: bool) -> object:
    return yaml.safe_load("\n".join(redis_section(version, url, **kwargs)))["redis"]


@pytest.mark.parametrize(
    ("url", "section"),
    [
        ("redis://cache:6379/2", {"addrs": ["cache:6379"], "db": 2}),
        (
            "redis://h1:7000,h2:7001,h3:7002",
            {"addrs": ["h1:7000", "h2:7001", "h3:7002"], "db": 0},
        ),
        (
            "redis://app:pw@s1:26379,s2:26379/1?master_name=m&sentinel_password=spw",
            {
                "addrs": ["s1:26379", "s2:26379"],
                "db": 1,
                "mastername": "m",
                "username": "app",
                "password": "pw",
                "sentinelpassword": "spw",
            },
        ),
        (
            "rediss://cache:6380/0?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem",
            {
                "addrs": ["cache:6380"],
                "db": 0,
                "tls": {"rootcas": ["/ca.pem"], "certificate": "/c.pem", "key": "/k.pem"},
            },
        ),
    ],
)
def test_registry_3_gets_addrs_and_everything_its_config_can_say(url: str, section: object) -> None:
    assert _redis(V3, url) == section


def test_registry_2_gets_one_addr() -> None:
    assert _redis(V2, "redis://:pw@cache:6379/3") == {
        "addr": "cache:6379",
        "db": 3,
        "password": "pw",
    }


@pytest.mark.parametrize(
    "url", ["redis://h1:7000,h2:7001", "redis://s1:26379?master_name=m", "rediss://cache:6380"]
)
def test_registry_2_cannot_be_told_of_what_it_cannot_reach(url: str) -> None:
    with pytest.raises(ConfigError, match=r"needs registry 3\.x"):
        redis_section(V2, url)


def test_a_printed_snippet_hides_the_redis_passwords() -> None:
    text = registry_config(
        version=V3,
        root="/r",
        redis_url="redis://app:pw1@s1:26379/0?master_name=m&sentinel_password=pw2",
        passwords=False,
    )
    assert "pw1" not in text
    assert "pw2" not in text
    assert "<the password in WARMER_REDIS_URL>" in text
