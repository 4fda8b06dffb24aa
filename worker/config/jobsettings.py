"""The settings of the scheduled jobs (Celery beat): when each runs and what it may spend.

A part of :class:`~worker.config.settings.Settings`, which inherits these fields (read as
``WARMER_<NAME>`` like the rest); kept apart so that each module stays one concern.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from worker.config.schedules import parse_schedule

__all__ = ["JobSettings"]


class JobSettings(BaseSettings):
    """When beat runs each job, and the audit's budget of store requests."""

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
    audit_interval: float = Field(
        default=60.0,
        gt=0,
        description="Seconds between the audit's looks at a random sample of the cache.",
    )
    audit_requests_per_1000_pulls: float = Field(
        default=1.0,
        ge=0,
        description=(
            "Store requests the continuous audit may spend per 1,000 pulls counted "
            "(0: no audit). On a filesystem an entry checked counts as one."
        ),
    )
    audit_requests_per_minute: int = Field(
        default=60,
        ge=0,
        description="At most this many store requests a minute for the audit, however busy.",
    )

    @field_validator("rewarm_schedule", "reconcile_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        parse_schedule(value)
        return value
