"""One log format for every process the warmer runs (the command line, the receiver under
uvicorn, Celery's worker and beat): a line of text, or a JSON object a line for a log
collector (``WARMER_LOG_FORMAT=json``), on stderr, at ``WARMER_LOG_LEVEL``.

uvicorn and Celery are told not to configure logging themselves (uvicorn's ``log_config=None``,
Celery's ``setup_logging`` signal): their loggers propagate to the one handler set here.
"""

from __future__ import annotations

import logging
import sys
from typing import Final, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

__all__ = ["LogFormat", "LogSettings", "configure_logging"]

LogFormat = Literal["text", "json"]

_TEXT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_FIELDS: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(level: str, form: LogFormat = "text") -> None:
    """Send every logger's records at ``level`` and above to stderr in ``form``, replacing
    what was configured before (a process configures once, at its start)."""
    handler = logging.StreamHandler(sys.stderr)
    if form == "json":
        # uvicorn adds its message again with terminal colours: left out.
        reserved = [*RESERVED_ATTRS, "color_message"]
        names = {"asctime": "time", "levelname": "level"}
        handler.setFormatter(JsonFormatter(_FIELDS, rename_fields=names, reserved_attrs=reserved))
    else:
        handler.setFormatter(logging.Formatter(_TEXT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Third-party loggers that set their own handlers or levels at import: through ours.
    for name in ("uvicorn", "uvicorn.error", "celery", "kombu"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


class LogSettings(BaseSettings):
    """How the warmer's processes log: a part of :class:`~worker.config.settings.Settings`."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = Field(
        default=None,
        description=(
            "DEBUG, INFO, WARNING or ERROR for every process; unset: INFO for the services "
            "(webhook, worker, beat, up), WARNING for one-off commands (-v, -vv: more)."
        ),
    )

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _any_case(cls, value: object, info: ValidationInfo) -> object:
        # INFO or info, json or JSON: as people type them.
        if not isinstance(value, str):
            return value
        return value.upper() if info.field_name == "log_level" else value.lower()

    log_format: LogFormat = Field(
        default="text",
        description="`text` (a line: time, level, logger, message) or `json` (an object a line).",
    )
