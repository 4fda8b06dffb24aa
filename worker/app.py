"""The app for Celery's own command line: ``celery -A worker.app worker|beat|flower``.

The one place that builds an app at import time, because Celery's command line needs a module
attribute. Everything else builds its own with :func:`worker.celery_app.create_app`.
"""

from __future__ import annotations

from worker.celery_app import WarmerCelery, create_app
from worker.settings import load_settings

__all__ = ["app"]

app: WarmerCelery = create_app(load_settings())
