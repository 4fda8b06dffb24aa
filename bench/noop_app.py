"""A Celery app with one task that does nothing: the baseline of bench/events.py."""

from __future__ import annotations

import os

from celery import Celery

app = Celery("noop", broker=os.environ["NOOP_BROKER_URL"])
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1, task_ignore_result=True)


@app.task(name="noop")
def noop() -> None:
    """Nothing: what a task costs by itself."""
