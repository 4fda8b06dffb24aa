"""Tasks of the event pipeline: ``warmer.events`` applies a batch, ``warmer.redeliver`` sends
again what the ledger says is overdue (see :mod:`worker.state.ledger`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from tasks.base import DeadLetterOnFailure, RetryOnStateTrouble
from worker.celeryapp.names import EVENTS_TASK, REDELIVER_TASK
from worker.core.pipeline import process
from worker.registry.events import Message
from worker.state.figures import record
from worker.state.ledger import parse_messages, redeliver, settle

if TYPE_CHECKING:
    from worker.celeryapp import WarmerCelery

__all__ = ["register_event_tasks"]


def register_event_tasks(app: WarmerCelery) -> None:
    """Register the pipeline's tasks on ``app``."""

    # shared=False: a shared task (Celery's default) is added to every app created later, with
    # this app's closure, and would shadow their own: each app must run with its own context.
    @app.task(shared=False, name=EVENTS_TASK, base=DeadLetterOnFailure)
    def events(messages: list[Message]) -> dict[str, Any]:
        batch, bad = parse_messages(messages)
        result = process(batch, app.context.service(), app.context.state)
        state = app.context.state

        def record_figures(dead_lettered: int) -> None:
            result.figures.dead_lettered = dead_lettered
            record(state, result.figures, result.repositories)

        settle(
            state,
            batch,
            retry=result.retry,
            dead=result.dead,
            bad=bad,
            now=time.time(),
            before_release=lambda settled: record_figures(settled.dead_lettered),
        )
        return result.as_dict()

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
