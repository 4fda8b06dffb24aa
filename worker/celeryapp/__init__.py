"""The Celery app, as publishers and beat need it: built from the settings (:func:`create_app`,
:mod:`factory`), knowing its tasks by name only (:mod:`names`), with the broker's and result
backend's URLs in Celery's spelling (:mod:`urls`). The tasks themselves live in :mod:`tasks`,
above it, which registers them on the app of a worker process."""

from worker.celeryapp.factory import WarmerCelery, WarmerContext, check_schedules, create_app

__all__ = ["WarmerCelery", "WarmerContext", "check_schedules", "create_app"]
