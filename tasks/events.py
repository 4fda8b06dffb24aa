"""The task that applies a batch of registry events: ``warmer.events``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, cast

from celery import Task
from celery.utils.time import get_exponential_backoff_interval

from worker.deadletters import parse_messages, settle
from worker.errors import StateError
from worker.pipeline import process

if TYPE_CHECKING:
    from worker.celery_app import WarmerCelery

    _Task = Task[Any, Any]
else:
    _Task = Task

__all__ = ["EVENTS_TASK", "MAX_RETRIES", "register_event_tasks"]

EVENTS_TASK: Final = "warmer.events"
#: Tries after the first; with backoff from 2 s doubling to 5 minutes, about 20 minutes in all.
MAX_RETRIES: Final = 8


class _DeadLetterOnFailure(_Task):
    """A task whose unexpected failure dead-letters its events instead of losing them."""

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        messages = args[0] if args else []
        reason = f"task {task_id} failed: {exc!r}"
        app = cast("WarmerCelery", self.app)
        app.context.state.dead_letter((reason, m) for m in messages)


def register_event_tasks(app: WarmerCelery) -> None:
    """Register ``warmer.events`` on ``app``."""

    @app.task(
        bind=True,
        base=_DeadLetterOnFailure,
        name=EVENTS_TASK,
        max_retries=MAX_RETRIES,
        # The state Redis holds the dead letters: when it is away, try the batch again later.
        autoretry_for=(StateError,),
        retry_backoff=2,
        retry_backoff_max=300,
        retry_jitter=True,
    )
    def events(self: _Task, messages: list[list[Any]]) -> dict[str, Any]:
        batch, bad = parse_messages(messages)
        result = process(batch, app.context.service(), app.context.state)
        attempt = self.request.retries
        retry = settle(app.context.state, result, bad, attempt=attempt, max_retries=MAX_RETRIES)
        if retry:
            countdown = get_exponential_backoff_interval(2, attempt, 300, full_jitter=True)
            raise self.retry(args=(retry,), countdown=countdown)
        return result.as_dict()
