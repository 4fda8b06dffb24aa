"""Configuration: read once from the environment (and a ``.env`` file) into one typed object.

Build it with :func:`load_settings`, which turns a bad value into a
:class:`~worker.errors.ConfigError` naming the variable, and pass it to what needs it: nothing
reads the environment anywhere else.
"""

from __future__ import annotations

from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "Schema",
    "Settings",
    "load_settings",
    "parse_schedule",
    "redact_url",
    "settings_table",
]

ENV_PREFIX: Final = "WARMER_"
_REDIS_SCHEMES: Final = ("redis", "rediss", "unix")
_BROKER_SCHEMES: Final = ("redis", "rediss", "amqp", "amqps", "pyamqp", "sentinel")


class Schema(StrEnum):
    """Which generation of the registry's cache schema to read and write (``WARMER_SCHEMA``)."""

    BLOBDESCRIPTOR = "blobdescriptor"
    LAYERINFO = "layerinfo"
    BOTH = "both"

    @property
    def has_descriptor(self) -> bool:
        """True when the 2.1+ fields (digest, size, mediatype) are part of this schema."""
        return self is not Schema.LAYERINFO

    @property
    def has_layerinfo(self) -> bool:
        """True when the 2.0 fields (path, length) are part of this schema."""
        return self is not Schema.BLOBDESCRIPTOR


class Settings(BaseSettings):
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
        description="The registry's blob-descriptor cache: its `redis.addr` and `redis.db`.",
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
    cache_schema: Schema = Field(
        default=Schema.BLOBDESCRIPTOR,
        validation_alias=AliasChoices(f"{ENV_PREFIX}SCHEMA", "cache_schema"),
        description="Cache schema: `blobdescriptor` (registry 2.1+), `layerinfo` (2.0), `both`.",
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
        default=600,
        gt=0,
        description="Seconds an event id is remembered, to drop the registry's resends of it.",
    )
    deadletter_max: int = Field(
        default=10_000,
        gt=0,
        description="Dead letters kept at most; the oldest are dropped (and counted) beyond.",
    )
    pull_flush_interval: float = Field(
        default=0.25,
        gt=0,
        description="Seconds between the receiver's writes of the pulls it added up.",
    )
    cache_check_interval: float = Field(
        default=30.0,
        gt=0,
        description="Seconds between checks for a cache emptied or restarted (then a re-warm).",
    )
    rewarm_lock_ttl: int = Field(
        default=300,
        gt=0,
        description="Seconds the one-re-warm-at-a-time lock outlives a holder that stopped.",
    )
    shutdown_grace: float = Field(
        default=15.0,
        gt=0,
        description="Seconds a stopping worker lets running tasks finish before it requeues them.",
    )

    stats_interval: float = Field(
        default=60.0,
        gt=0,
        description="Seconds between snapshots of the figures (the `warmer.stats` beat task).",
    )
    rewarm_schedule: str = Field(
        default="0 4 * * *",
        description="When beat re-warms everything: a crontab line (UTC) or seconds.",
    )
    reconcile_schedule: str = Field(
        default="30 4 * * *",
        description="When beat reconciles the cache with the store: a crontab line or seconds.",
    )

    @field_validator("rewarm_schedule", "reconcile_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        parse_schedule(value)
        return value

    @field_validator("redis_url", "state_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        return _check_scheme(value, _REDIS_SCHEMES)

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        return _check_scheme(value, _BROKER_SCHEMES)

    @property
    def results_url(self) -> str:
        """The Celery result backend: the configured one, else the state Redis."""
        return self.result_backend or self.state_url

    def environment(self) -> dict[str, str]:
        """The variables that give a child process exactly these settings (the set ones)."""
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, Enum):
                value = value.value
            env[_env_name(name)] = str(value)
        return env

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name and name.endswith(("_url", "backend")) and isinstance(value, str):
                yield name, redact_url(value)
            else:
                yield name, value


def parse_schedule(value: str) -> float | tuple[str, str, str, str, str]:
    """Seconds (``"3600"``), or the five fields of a crontab line (``"0 4 * * *"``)."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        fields = text.split()
        if len(fields) != 5:
            raise ValueError(
                "expected seconds or a crontab line of five fields (minute hour day month "
                f"weekday), not {value!r}"
            ) from None
        return (fields[0], fields[1], fields[2], fields[3], fields[4])
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, not {value!r}")
    return seconds


def _check_scheme(value: str, schemes: tuple[str, ...]) -> str:
    scheme = urlsplit(value).scheme
    if scheme not in schemes:
        raise ValueError(
            f"URL scheme must be one of {', '.join(schemes)}, not {scheme or 'none'!r}"
        )
    return value


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for logs and reprs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; raise ConfigError naming the first bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            got = error.get("input")
            if isinstance(got, str) and "://" in got:
                got = redact_url(got)
            problems.append(f"{_env_name(field)}: {error['msg']} (got {got!r})")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


def _env_name(field: str) -> str:
    # Aliased fields report the alias they were read from; the others their field name.
    if field.upper().startswith(ENV_PREFIX) or field.upper() == "SENTRY_DSN":
        return field.upper()
    if field == "cache_schema":
        return f"{ENV_PREFIX}SCHEMA"
    return f"{ENV_PREFIX}{field.upper()}"


def settings_table() -> str:
    """The configuration table of the README, in Markdown, made from the fields above."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "(unset)" if default is None else f"`{getattr(default, 'value', default)}`"
        rows.append(f"| `{_env_name(name)}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)
