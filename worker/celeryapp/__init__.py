"""The Celery app (:func:`create_app`) and the names of its tasks (:mod:`names`)."""

from worker.celeryapp.factory import WarmerCelery, WarmerContext, create_app

__all__ = ["WarmerCelery", "WarmerContext", "create_app"]
