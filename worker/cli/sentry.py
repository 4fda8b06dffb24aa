"""Error reporting to Sentry, when ``SENTRY_DSN`` is set, for the long-running commands.

sentry-sdk is process-global by design, so this is called once, at the start of ``warmer
webhook``, ``worker``, ``beat`` or ``up``, never at import. Celery tasks and the ASGI receiver
are instrumented (sentry-sdk enables its Starlette integration by itself when Starlette is
installed; ``POST /events``, a plain ASGI app, reports through the log: every error the receiver
logs, and uvicorn's line for an exception it raised, becomes an event); beat's schedules are
reported as cron monitors. No token reaches Sentry: the
recursive scrubber drops ``Authorization`` headers and token-named fields, and every string
holding the webhook token's value is redacted before an event or breadcrumb leaves.
"""

from __future__ import annotations

from typing import Any, Final

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

from worker import __version__
from worker.config.settings import Settings

__all__ = ["REDACTED", "init_sentry"]

REDACTED: Final = "[Filtered]"


def init_sentry(settings: Settings, component: str) -> bool:
    """Start reporting to Sentry; return False (and do nothing) without a DSN."""
    if settings.sentry_dsn is None:
        return False
    secrets = [s.get_secret_value() for s in (settings.webhook_token,) if s is not None]
    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        release=f"registry-cache-warmer@{__version__}",
        server_name=component,
        integrations=[CeleryIntegration(monitor_beat_tasks=True)],
        send_default_pii=False,
        event_scrubber=EventScrubber(denylist=[*DEFAULT_DENYLIST, "webhook_token"], recursive=True),
        before_send=lambda event, _hint: _redact(event, secrets),
        before_breadcrumb=lambda crumb, _hint: _redact(crumb, secrets),
    )
    return True


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret and secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, secrets) for v in value]
    return value
