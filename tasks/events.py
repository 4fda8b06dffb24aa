"""Tasks of the event pipeline: ``warmer.events`` applies a batch, ``warmer.redeliver`` sends
again what the ledger says is overdue (see :mod:`worker.state.ledger`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from tasks.base import DeadLetterOnFailure, RetryOnStateTrouble
from worker.celeryapp.names import EVENTS_TASK, REDELIVER_TASK
from worker.core.pipeline import process
from worker.registry.events import Message
from worker.state.ledger import parse_messages, redeliver, settle
from worker.state.slo import PUSH

if TYPE_CHECKING:
    from worker.celeryapp import WarmerCelery
    from worker.core.blobservice import CachedBlobService
    from worker.state import StateStore

__all__ = ["apply_events", "register_event_tasks"]


def apply_events(
    messages: list[Message], service: CachedBlobService, state: StateStore, now: float
) -> dict[str, Any]:
    """What ``warmer.events`` does with its messages: process them, then settle them in the
    ledger with the task's figures; return the task's result.

    Push-to-warm is recorded before the ledger lets go of the events, so whoever sees them
    settled sees it too (a batch delivered twice is observed twice, as it was warmed twice)."""
    batch, bad = parse_messages(messages)
    result = process(batch, service, state)
    state.slo.observe(PUSH, result.push_to_warm)
    figures = (result.figures, result.repositories)
    settle(state, batch, retry=result.retry, dead=result.dead, bad=bad, now=now, figures=figures)
    return result.as_dict()


def register_event_tasks(app: WarmerCelery) -> None:
    """Register the pipeline's tasks on ``app``."""

    # shared=False: a shared task (Celery's default) is added to every app created later, with
    # this app's closure, and would shadow their own: each app must run with its own context.
    # No STARTED state: a quarter of Celery's own cost of a task that runs for milliseconds.
    @app.task(shared=False, name=EVENTS_TASK, base=DeadLetterOnFailure, track_started=False)
    def events(messages: list[Message]) -> dict[str, Any]:
        return apply_events(messages, app.context.service(), app.context.state, time.time())

    @app.task(shared=False, name=REDELIVER_TASK, base=RetryOnStateTrouble)
    def redeliver_overdue() -> dict[str, int]:
        sent, dead = redeliver(
            app.context.state,
            app.context.publish,
            now=time.time(),
            first_wait=app.context.first_wait,
            queued=app.context.queued(),
        )
        return {"sent": sent, "dead": dead}
