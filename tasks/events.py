"""Tasks of the event pipeline: ``warmer.events`` applies a batch, ``warmer.redeliver`` sends
again what the ledger says is overdue (see :mod:`worker.ledger`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final, cast

from celery import Task

from worker.errors import StateError
from worker.ledger import parse_messages, redeliver, settle
from worker.pipeline import process
from worker.stats import record

if TYPE_CHECKING:
    from worker.celery_app import WarmerCelery

    _Task = Task[Any, Any]
else:
    _Task = Task

__all__ = ["EVENTS_TASK", "REDELIVER_TASK", "register_event_tasks"]

EVENTS_TASK: Final = "warmer.events"
REDELIVER_TASK: Final = "warmer.redeliver"


class _DeadLetterOnFailure(_Task):
    """A task whose unexpected failure dead-letters its events instead of losing them."""

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        messages = args[0] if args else []
        reason = f"task {task_id} failed: {exc!r}"
        app = cast("WarmerCelery", self.app)
        app.context.state.dead_letter((reason, m) for m in messages)
        app.context.state.untrack(messages)


def register_event_tasks(app: WarmerCelery) -> None:
    """Register the pipeline's tasks on ``app``."""

    # The state Redis holds the ledger: when it is away, a task is tried again as a whole.
    # shared=False: a shared task (Celery's default) is added to every app created later, with
    # this app's closure, and would shadow their own: each app must run with its own context.
    @app.task(
        shared=False,
        name=EVENTS_TASK,
        base=_DeadLetterOnFailure,
        autoretry_for=(StateError,),
        retry_backoff=2,
        retry_backoff_max=30,
        retry_jitter=True,
        max_retries=10,
    )
    def events(messages: list[list[Any]]) -> dict[str, Any]:
        batch, bad = parse_messages(messages)
        result = process(batch, app.context.service(), app.context.state)
        state = app.context.state
        settle(
            state,
            batch,
            result,
            bad,
            now=time.time(),
            before_release=lambda settled: record(state, result, settled.dead_lettered),
        )
        return result.as_dict()

    @app.task(
        shared=False,
        name=REDELIVER_TASK,
        autoretry_for=(StateError,),
        retry_backoff=2,
        retry_backoff_max=30,
        retry_jitter=True,
        max_retries=10,
    )
    def redeliver_overdue() -> dict[str, int]:
        sent, dead = redeliver(
            app.context.state,
            app.context.publish,
            now=time.time(),
            first_wait=app.context.first_wait,
        )
        return {"sent": sent, "dead": dead}
