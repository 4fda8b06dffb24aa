"""``NAME_FILE=PATH``: a setting read from a file, as compose and Kubernetes mount secrets.

For the secrets (the webhook token, Flower's password, the Sentry DSN), the URLs (which may hold
a password) and the registry's ``REGISTRY_...`` overrides (``REGISTRY_STORAGE_S3_SECRETKEY_FILE``):
the file's text, without its last newline, is the value. NAME and NAME_FILE both set must agree
(``warmer up`` hands its children both).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

from worker.errors import ConfigError

__all__ = ["FILE_SUFFIX", "FILE_VARIABLES", "read_files", "registry_environ", "settings_from_files"]

FILE_SUFFIX: Final = "_FILE"
_REGISTRY: Final = "REGISTRY_"
#: The variables a file may give, and the setting each is.
_SETTINGS: Final = {
    "WARMER_WEBHOOK_TOKEN": "webhook_token",
    "FLOWER_PASSWORD": "flower_password",
    "SENTRY_DSN": "sentry_dsn",
    "WARMER_SENTRY_DSN": "sentry_dsn",
    **{
        f"WARMER_{name.upper()}": name
        for name in ("redis_url", "broker_url", "state_url", "result_backend", "storage_url")
    },
}
#: The settings' NAME_FILE variables.
FILE_VARIABLES: Final = frozenset(f"{name}{FILE_SUFFIX}" for name in _SETTINGS)


def read_files(environ: Mapping[str, str]) -> dict[str, str]:
    """Each variable a ``NAME_FILE`` of ``environ`` gives, by NAME; ConfigError when unreadable."""
    found: dict[str, str] = {}
    for name, path in environ.items():
        base = name.upper().removesuffix(FILE_SUFFIX)
        if base == name.upper() or not (base in _SETTINGS or base.startswith(_REGISTRY)):
            continue
        try:
            value = Path(path).read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(f"{name}: cannot read {path}: {why}") from None
        if environ.get(base, value) != value:
            raise ConfigError(f"{base} and {name} are both set, to different values: set one")
        found[base] = value
    return found


def settings_from_files(files: Mapping[str, str]) -> dict[str, str]:
    """The settings (by field name) among what :func:`read_files` found."""
    return {_SETTINGS[name]: value for name, value in files.items() if name in _SETTINGS}


def registry_environ(environ: Mapping[str, str], files: Mapping[str, str]) -> dict[str, str]:
    """``environ`` for the registry's overrides: each ``REGISTRY_..._FILE`` replaced by its
    variable (the registry knows no ``_FILE``: left in, it would name a key of its own)."""
    kept = {k: v for k, v in environ.items() if k.upper().removesuffix(FILE_SUFFIX) not in files}
    return kept | {k: v for k, v in files.items() if k.startswith(_REGISTRY)}
