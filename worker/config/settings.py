"""Configuration: read once from the environment (and a ``.env`` file) into one typed object.

Build it with :func:`load_settings`, which turns a bad value into a
:class:`~worker.errors.ConfigError` naming the variable, and pass it to what needs it: nothing
reads the environment anywhere else.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import SettingsConfigDict

from worker.config import secretfiles
from worker.config.connections import parse_redis_url
from worker.config.defaults import DEADLETTER_MAX, DEDUP_TTL, PULL_FLUSH_INTERVAL
from worker.config.imagesettings import ImageSettings
from worker.config.jobsettings import JobSettings
from worker.config.logformat import LogSettings
from worker.config.registryfile import read_registry_config
from worker.config.secretvalues import check_token, redact_url
from worker.config.storageurl import StorageTarget, parse_storage_url
from worker.config.variables import unknown_variables
from worker.errors import ConfigError
from worker.registry.versions import RegistryVersion

__all__ = [
    "ENV_PREFIX",
    "Settings",
    "env_name",
    "load_settings",
    "parse_settings",
    "warn_unknown_variables",
]

_log = logging.getLogger(__name__)

ENV_PREFIX: Final = "WARMER_"
# Fields whose value no message shows (as the aliases an error may name them by).
_SECRETS: Final = frozenset(
    {
        "webhook_token",
        "sentry_dsn",
        "SENTRY_DSN",
        f"{ENV_PREFIX}SENTRY_DSN",
        "flower_password",
        "FLOWER_PASSWORD",
    }
)
# Settings read under their own names, as other tools know them.
_UNPREFIXED: Final = frozenset({"SENTRY_DSN", "FLOWER_USER", "FLOWER_PASSWORD"})
_BROKER_SCHEMES: Final = ("redis", "rediss", "amqp", "amqps", "pyamqp", "sentinel")


class Settings(JobSettings, LogSettings, ImageSettings):
    """Every setting of the warmer. The repr hides passwords in URLs, the token and the DSN."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        # VAR= in a shell or a compose file means "not set", never "" (an empty storage root
        # would otherwise be the current directory).
        env_ignore_empty=True,
    )

    redis_url: str = Field(
        default="redis://localhost:6379/0",
        description="The registry's cache Redis (its `redis:` section): one server, several "
        "hosts for a Cluster, `?master_name=` for Sentinel, `rediss://` for TLS.",
    )
    broker_url: str = Field(
        default="redis://localhost:6379/1",
        description="Celery broker (Redis or RabbitMQ). Never the cache's Redis if it evicts.",
    )
    state_url: str = Field(
        default="redis://localhost:6379/2",
        description="The warmer's own keys: counters, dedup, dead letters, access records.",
    )
    result_backend: str | None = Field(
        default=None, description="Celery result backend; empty means the state URL."
    )
    storage_root: Path | None = Field(
        default=None,
        description="The registry's `storage.filesystem.rootdirectory`, mounted read-only.",
    )
    storage_url: str | None = Field(
        default=None,
        description="The registry's storage as a URL: `s3://BUCKET/ROOTDIRECTORY` (AWS "
        "credentials, region, `AWS_ENDPOINT_URL_S3` from the standard variables) or "
        "`file:///PATH`; instead of `WARMER_STORAGE_ROOT`.",
    )
    registry_config: Path | None = Field(
        default=None,
        description="The registry's own config.yml (mounted read-only): storage, cache Redis and "
        "version come from it (and its `REGISTRY_...` overrides) unless set here.",
    )
    aws_region: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION", "aws_region"),
        exclude=True,
        description="The S3 region when the storage URL names none (AWS's own variable).",
    )
    registry_version: RegistryVersion = Field(
        default=RegistryVersion.V3,
        description="The registry whose cache is filled: `3` (3.x), `2` (2.1 to 2.8), `2.0`, "
        "`2.0+2` (both on one Redis); `registry --version` output works too.",
    )
    retired_schema: str | None = Field(
        default=None,
        validation_alias=AliasChoices(f"{ENV_PREFIX}SCHEMA", "retired_schema"),
        exclude=True,
        description="Replaced by `WARMER_REGISTRY_VERSION`; refused when set.",
    )
    webhook_token: SecretStr | None = Field(
        default=None,
        description="Bearer token the registry sends in its notification `Authorization` header.",
    )
    sentry_dsn: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SENTRY_DSN", f"{ENV_PREFIX}SENTRY_DSN", "sentry_dsn"),
        description="Sentry DSN; errors go to Sentry when set.",
    )
    flower_user: str | None = Field(
        default=None,
        validation_alias=AliasChoices("FLOWER_USER", "flower_user"),
        description="`warmer flower`: the user of Flower's basic auth.",
    )
    flower_password: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("FLOWER_PASSWORD", "flower_password"),
        description="`warmer flower`: its password (an empty one or a placeholder is refused).",
    )
    skip_eviction_check: bool = Field(
        default=False,
        description="Start even when the broker's or state's Redis may evict keys (see Brokers).",
    )
    redis_timeout: float = Field(
        default=2.0,
        gt=0,
        description="Seconds to wait on the cache Redis before falling back to the store.",
    )

    visibility_timeout: int = Field(
        default=60,
        gt=0,
        description="Redis broker: seconds before a task a dead worker held is handed out again.",
    )

    result_ttl: int = Field(
        default=4 * 3600,
        gt=0,
        description="Seconds a task's result (its counters, as Flower shows them) is kept.",
    )
    dedup_ttl: int = Field(
        default=DEDUP_TTL,
        gt=0,
        description="Seconds an event id is remembered, to drop the registry's resends of it.",
    )
    deadletter_max: int = Field(
        default=DEADLETTER_MAX,
        gt=0,
        description="Dead letters kept at most; the oldest are dropped (and counted) beyond.",
    )
    pull_flush_interval: float = Field(
        default=PULL_FLUSH_INTERVAL,
        gt=0,
        description="Seconds between the receiver's writes of the pulls it added up.",
    )
    shutdown_grace: float = Field(
        default=15.0,
        gt=0,
        description="Seconds a stopping worker lets running tasks finish before it requeues them.",
    )

    @field_validator("webhook_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_token(value.get_secret_value())
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parse_redis_url(value)
        return value

    @field_validator("state_url")
    @classmethod
    def _state_url(cls, value: str) -> str:
        _no_tls_sentinel(value)  # Celery's result backend is on it
        # Its ledger and figures move in multi-key transactions, which a Cluster cannot run.
        if parse_redis_url(value).kind == "cluster":
            raise ValueError(
                "the warmer's own Redis is one server or a Sentinel master, not a Cluster "
                "(several hosts need ?master_name=)"
            )
        return value

    @field_validator("storage_url")
    @classmethod
    def _storage_url(cls, value: str | None) -> str | None:
        if value is not None:
            parse_storage_url(value)
        return value

    @model_validator(mode="after")
    def _one_storage(self) -> Settings:
        if self.storage_url is not None and self.storage_root is not None:
            target = parse_storage_url(self.storage_url)
            if target.driver != "filesystem" or Path(target.root) != self.storage_root:
                raise ValueError(
                    "WARMER_STORAGE_URL and WARMER_STORAGE_ROOT name different storage: "
                    "set one of them"
                )
        return self

    @property
    def storage(self) -> StorageTarget | None:
        """The registry's storage: from ``storage_url``, else ``storage_root``; None if unset."""
        if self.storage_url is not None:
            return parse_storage_url(self.storage_url)
        if self.storage_root is not None:
            return StorageTarget("filesystem", str(self.storage_root))
        return None

    @field_validator("registry_version", mode="before")
    @classmethod
    def _registry_version(cls, value: object) -> RegistryVersion:
        return RegistryVersion.parse(value)

    @field_validator("retired_schema")
    @classmethod
    def _retired_schema(cls, value: str | None) -> None:
        if value is not None:
            new = {
                "blobdescriptor": "3 (or 2 for registry 2.x)",
                "layerinfo": "2.0",
                "both": "2.0+2",
            }
            raise ValueError(
                "WARMER_SCHEMA was replaced by WARMER_REGISTRY_VERSION: set "
                f"WARMER_REGISTRY_VERSION={new.get(value, '3')} instead"
            )
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        _check_scheme(value, _BROKER_SCHEMES)
        if urlsplit(value).scheme in ("redis", "rediss"):
            _no_tls_sentinel(value)
        if urlsplit(value).scheme in ("redis", "rediss") and (
            parse_redis_url(value).kind == "cluster"
        ):
            raise ValueError(
                "a broker is one Redis server or a Sentinel master, not a Cluster "
                "(several hosts need ?master_name=)"
            )
        return value

    @property
    def results_url(self) -> str:
        """The Celery result backend: the configured one, else the state Redis."""
        return self.result_backend or self.state_url

    def environment(self) -> dict[str, str]:
        """The variables that give a child process exactly these settings (the set ones)."""
        env: dict[str, str] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if field.exclude:
                continue
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, Enum):
                value = value.value
            env[env_name(name)] = str(value)
        return env

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name and name.endswith(("_url", "backend")) and isinstance(value, str):
                yield name, redact_url(value)
            else:
                yield name, value


def _no_tls_sentinel(value: str) -> None:
    # Celery reaches a Sentinel through kombu's sentinel:// list, which this warmer does not
    # give TLS options: refused, rather than a connection that silently drops TLS.
    target = parse_redis_url(value)
    if target.kind == "sentinel" and target.ssl:
        raise ValueError(
            "the broker and the state Redis go through a Sentinel without TLS only "
            "(rediss:// with ?master_name= is for WARMER_REDIS_URL, the cache)"
        )


def _check_scheme(value: str, schemes: tuple[str, ...]) -> str:
    scheme = urlsplit(value).scheme
    if scheme not in schemes:
        raise ValueError(
            f"URL scheme must be one of {', '.join(schemes)}, not {scheme or 'none'!r}"
        )
    return value


def load_settings(**overrides: Any) -> Settings:
    """:func:`parse_settings`, after a warning for each unknown ``WARMER_*`` variable."""
    warn_unknown_variables(os.environ)
    return parse_settings(**overrides)


def parse_settings(**overrides: Any) -> Settings:
    """Read the settings; raise ConfigError naming the first bad variable.

    With ``WARMER_REGISTRY_CONFIG``, the registry's config file (and the ``REGISTRY_...``
    overrides in this environment) gives the storage, the cache Redis and the registry version
    that no ``WARMER_*`` variable sets.
    """
    files = secretfiles.read_files(os.environ)  # NAME_FILE=PATH: compose's, Kubernetes' secrets
    overrides = secretfiles.settings_from_files(files) | overrides
    try:
        settings = Settings(**overrides)
        if settings.registry_config is None:
            return settings
        environ = secretfiles.registry_environ(os.environ, files)
        derived = read_registry_config(settings.registry_config, environ)
        explicit = settings.model_fields_set
        if explicit & {"storage_url", "storage_root"}:
            derived.pop("storage_url", None)
        fill = {k: v for k, v in derived.items() if k not in explicit}
        return Settings(**fill, **overrides) if fill else settings
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            if not error["loc"]:  # a check of several settings names them in its message
                problems.append(error["msg"].removeprefix("Value error, "))
                continue
            field = str(error["loc"][0])
            got = error.get("input")
            if field in _SECRETS:  # a refused secret is still a secret: never echoed
                problems.append(f"{env_name(field)}: {error['msg']}")
                continue
            if isinstance(got, str) and "://" in got:
                got = redact_url(got)
            problems.append(f"{env_name(field)}: {error['msg']} (got {got!r})")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


def _known_variables() -> frozenset[str]:
    """Every ``WARMER_*`` variable a setting is read from."""
    names: set[str] = set()
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else []
        names |= {c.upper() for c in choices if isinstance(c, str)}
        names.add(env_name(field))
    return frozenset(n for n in names | secretfiles.FILE_VARIABLES if n.startswith(ENV_PREFIX))


def warn_unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """Warn about each ``WARMER_*`` variable no setting reads, naming the nearest known one
    (a misspelling is otherwise ignored without a word); return the warnings."""
    warnings = unknown_variables(environ, _known_variables(), ENV_PREFIX)
    for warning in warnings:
        _log.warning("%s", warning)
    return warnings


def env_name(field: str) -> str:
    # Aliased fields report the alias they were read from; the others their field name.
    if field.upper().startswith(ENV_PREFIX) or field.upper() in _UNPREFIXED:
        return field.upper()
    if field == "retired_schema":
        return f"{ENV_PREFIX}SCHEMA"
    return f"{ENV_PREFIX}{field.upper()}"
