"""Settings: defaults, the environment, a .env file, and refusals that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.config.settings import load_settings, warn_unknown_variables
from worker.errors import ConfigError
from worker.registry.versions import RegistryVersion


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "REDIS_URL",
        "BROKER_URL",
        "STATE_URL",
        "RESULT_BACKEND",
        "STORAGE_ROOT",
        "SCHEMA",
        "WEBHOOK_TOKEN",
        "REDIS_TIMEOUT",
    ):
        monkeypatch.delenv(f"WARMER_{name}", raising=False)
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_match_the_documented_ones() -> None:
    s = load_settings()
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.broker_url == "redis://localhost:6379/1"
    assert s.state_url == "redis://localhost:6379/2"
    assert s.results_url == s.state_url
    assert s.registry_version is RegistryVersion.V3
    assert s.storage_root is None


def test_environment_and_dotenv_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("WARMER_REGISTRY_VERSION=2.0\nWARMER_STORAGE_ROOT=/srv/reg\n")
    monkeypatch.setenv("WARMER_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    monkeypatch.setenv("SENTRY_DSN", "https://key@sentry.example/1")
    s = load_settings()
    assert s.registry_version is RegistryVersion.V2_0
    assert s.storage_root == Path("/srv/reg")
    assert s.broker_url.startswith("amqp://")
    assert s.sentry_dsn is not None


def test_repr_hides_passwords_tokens_and_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARMER_REDIS_URL", "redis://:s3cret@cache:6379/0")
    monkeypatch.setenv("WARMER_WEBHOOK_TOKEN", "tok-123")
    monkeypatch.setenv("SENTRY_DSN", "https://dsnkey@sentry.example/1")
    text = repr(load_settings())
    assert "s3cret" not in text
    assert "tok-123" not in text
    assert "dsnkey" not in text
    assert "redis://:***@cache:6379/0" in text


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("WARMER_SCHEMA", "redis", "WARMER_SCHEMA"),
        ("WARMER_REDIS_URL", "http://x", "WARMER_REDIS_URL"),
        ("WARMER_BROKER_URL", "kafka://x", "WARMER_BROKER_URL"),
        ("WARMER_REDIS_TIMEOUT", "0", "WARMER_REDIS_TIMEOUT"),
    ],
)
def test_a_wrong_value_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_refusal_does_not_leak_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARMER_STATE_URL", "http://user:hunter2@x/")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("given", "version"),
    [
        ("3", RegistryVersion.V3),
        ("v3.1.1", RegistryVersion.V3),
        ("2", RegistryVersion.V2),
        ("2.8.2", RegistryVersion.V2),
        ("v2.8.3", RegistryVersion.V2),
        ("2.0", RegistryVersion.V2_0),
        ("2.0.1", RegistryVersion.V2_0),
        ("2.0+2", RegistryVersion.V2_0_AND_V2),
    ],
)
def test_the_registry_version_takes_what_registry_version_prints(
    given: str, version: RegistryVersion
) -> None:
    assert load_settings(registry_version=given).registry_version is version


def test_an_unknown_registry_version_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"WARMER_REGISTRY_VERSION.*unknown registry version"):
        load_settings(registry_version="4")


def test_the_retired_schema_variable_is_refused_with_its_replacement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WARMER_SCHEMA", "layerinfo")
    with pytest.raises(ConfigError, match=r"WARMER_SCHEMA.*WARMER_REGISTRY_VERSION=2\.0"):
        load_settings()


@pytest.mark.parametrize(
    "url",
    [
        "redis://h1:7000,h2:7001,h3:7002",
        "redis://s1:26379,s2:26379/3?master_name=mymaster&sentinel_password=pw",
        "rediss://user:pw@cache:6380/0?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem",
        "unix:///run/redis.sock?db=2",
    ],
)
def test_cache_urls_for_every_kind_of_redis_are_accepted(url: str) -> None:
    assert load_settings(redis_url=url).redis_url == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://cache:6379", "scheme"),
        ("redis://cache:6379?ssl_ca_certs=/ca.pem", "TLS options need a rediss"),
        ("redis://cache:6379?timeout=3", "unknown option"),
        ("redis://cache:port", "not a number"),
    ],
)
def test_bad_cache_urls_say_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=rf"WARMER_REDIS_URL.*{problem}"):
        load_settings(redis_url=url)


def test_the_state_redis_cannot_be_a_cluster() -> None:
    with pytest.raises(ConfigError, match=r"WARMER_STATE_URL.*not a Cluster"):
        load_settings(state_url="redis://h1:7000,h2:7001")


def test_passwords_of_sentinel_and_acl_urls_are_redacted() -> None:
    s = load_settings(
        redis_url="redis://app:secret1@s1:26379,s2:26379/0?master_name=m&sentinel_password=secret2"
    )
    assert "secret" not in repr(s)


@pytest.mark.parametrize(
    ("token", "named"),
    [
        ("a&b", "'&'"),  # sed's "the match" in the old compose: another token, 401 forever
        ("a|b", "'|'"),  # sed's delimiter in the old compose: the registry crash-looped
        ("a b", "' '"),
        ("a,b]c", "',', ']'"),  # YAML's flow indicators in [Bearer <token>]
        ('a"b', "'\"'"),
        ("a$b", "'$'"),  # compose interpolates it
        ("a#b:c", "'#', ':'"),
        ("tok\u00e9n", "'\u00e9'"),
    ],
)
def test_a_token_the_registry_cannot_send_is_refused_naming_the_characters(
    token: str, named: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(webhook_token=token)
    message = str(caught.value)
    assert "WARMER_WEBHOOK_TOKEN" in message
    assert named in message
    assert token not in message  # a refused secret is not echoed


@pytest.mark.parametrize(
    "token", ["change-me-to-a-long-random-string", "CHANGE-ME", "__WARMER_WEBHOOK_TOKEN__"]
)
def test_a_placeholder_token_is_refused(token: str) -> None:
    with pytest.raises(ConfigError, match=r"WARMER_WEBHOOK_TOKEN: .*placeholder"):
        load_settings(webhook_token=token)


@pytest.mark.parametrize(
    "token", ["0123abcdef", "A-Za-z0-9._~+/", "YWJjZGVmZ2g=", "base64ish==", "t0ken"]
)
def test_tokens_of_rfc6750_characters_are_taken(token: str) -> None:
    settings = load_settings(webhook_token=token)
    assert settings.webhook_token is not None
    assert settings.webhook_token.get_secret_value() == token


@pytest.mark.parametrize(
    "url",
    [
        "redis://:Sup3rS3cret/x@cache:6379/0",  # an unencoded "/" in the password
        "redis://:Sup3r#S3cret@cache:6379/0",  # an unencoded "#"
        "redis://app:Sup3r/S3cret@s1:26379,s2:x/0?master_name=m",
    ],
)
def test_a_password_the_url_parser_misreads_is_never_shown(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(redis_url=url)
    assert "Sup3r" not in str(caught.value)
    assert "S3cret" not in str(caught.value)


@pytest.mark.parametrize("name", ["broker_url", "state_url"])
def test_queues_behind_a_sentinel_over_tls_are_refused_not_sent_in_clear(name: str) -> None:
    url = "rediss://:pw@s1:26379,s2:26379/1?master_name=m&ssl_ca_certs=/ca.pem"
    with pytest.raises(ConfigError, match="through a Sentinel without TLS only"):
        load_settings(**{name: url})
    assert load_settings(redis_url=url.replace("/1?", "/0?")).redis_url  # the cache may


def test_a_misspelled_variable_is_warned_about_with_the_nearest_setting() -> None:
    environ = {
        "WARMER_REDIS_URLL": "redis://x",
        "WARMER_AUDIT_REQUEST_PER_MINUTE": "5",
        "WARMER_FOO": "1",
        "WARMER_REDIS_URL": "redis://y",  # a setting
        "WARMER_SENTRY_DSN": "",  # a setting's alias
        "WARMER_REQUIRE_E2E": "1",  # the test suite's switch, no setting
        "OTHER_REDIS_URLL": "x",  # not ours
    }
    warnings = warn_unknown_variables(environ)
    assert warnings == [
        "WARMER_AUDIT_REQUEST_PER_MINUTE is not a setting of the warmer, and is ignored: did "
        "you mean WARMER_AUDIT_REQUESTS_PER_MINUTE?",
        "WARMER_FOO is not a setting of the warmer, and is ignored (docs/configuration.md "
        "lists the settings)",
        "WARMER_REDIS_URLL is not a setting of the warmer, and is ignored: did you mean "
        "WARMER_REDIS_URL?",
    ]
