"""The app for Celery's own command line: ``celery -A worker worker|beat|flower``.

The one place that builds an app at import time, because Celery's command line needs a module
attribute. Everything else builds its own with :func:`tasks.worker_app` (a worker) or
:func:`worker.celeryapp.create_app` (a publisher).
"""

from __future__ import annotations

from tasks import worker_app
from worker.celeryapp import WarmerCelery
from worker.config.settings import load_settings

__all__ = ["app"]

app: WarmerCelery = worker_app(load_settings())
