"""Celery tasks only: each parses its arguments, calls a plain function of :mod:`worker.core`
(or :mod:`worker.state`) and returns what it did. The logic is testable without Celery.

Tasks import the app; nothing imports tasks for a name (:mod:`worker.celeryapp.names` has them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.checks import register_check_tasks
from tasks.events import register_event_tasks
from tasks.images import register_image_tasks
from tasks.jobs import register_job_tasks
from worker.celeryapp import create_app

if TYPE_CHECKING:
    from worker.celeryapp import WarmerCelery
    from worker.config.settings import Settings

__all__ = ["register", "worker_app"]


def register(app: WarmerCelery) -> None:
    """Register every task on ``app``."""
    register_event_tasks(app)
    register_job_tasks(app)
    register_check_tasks(app)
    register_image_tasks(app)


def worker_app(settings: Settings) -> WarmerCelery:
    """The app of a process that runs the tasks: :func:`create_app` with every task registered."""
    app = create_app(settings)
    register(app)
    return app
