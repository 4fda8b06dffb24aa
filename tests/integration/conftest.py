"""Fixtures of the receiver tests that drive the warmer's own Starlette app in-process: the
Celery app and a client of ``build_webhook``, over the ``settings`` fixture of each module
(which names its broker DB, token and registry hosts)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tasks import worker_app
from worker.celeryapp import WarmerCelery
from worker.config.settings import Settings
from worker.receiver.assembly import build_webhook


@pytest.fixture
def celery(settings: Settings) -> WarmerCelery:
    """The warmer's Celery app on the module's settings, leaving pytest's logging alone."""
    app = worker_app(settings)
    app.conf.worker_hijack_root_logger = False
    return app


@pytest.fixture
def client(settings: Settings, celery: WarmerCelery) -> Iterator[TestClient]:
    """A client of the receiver built as ``warmer webhook`` builds it, its lifespan run."""
    with TestClient(build_webhook(settings, celery)) as c:
        yield c
