"""Celery tasks only: each parses its arguments, calls a plain function of :mod:`worker` and
returns that function's counters. Business logic lives in :mod:`worker`, testable without Celery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.events import register_event_tasks
from tasks.jobs import register_job_tasks

if TYPE_CHECKING:
    from worker.celery_app import WarmerCelery

__all__ = ["register"]


def register(app: WarmerCelery) -> None:
    """Register every task on ``app``."""
    register_event_tasks(app)
    register_job_tasks(app)
