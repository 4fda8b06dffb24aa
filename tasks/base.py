"""The warmer's task classes: each retry policy spelled once, as class attributes Celery reads
(``autoretry_for``, ``retry_backoff``, ...), so a task names its policy by its base."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from celery import Task

from worker.errors import PERMANENT_ERRORS, RETRYABLE_ERRORS, StateError

if TYPE_CHECKING:
    from worker.celeryapp import WarmerCelery

    _Task = Task[Any, Any]
else:
    _Task = Task

__all__ = ["DeadLetterOnFailure", "RetryOnStateTrouble", "RetryOnTrouble", "another_try"]

_log = logging.getLogger(__name__)


class RetryOnStateTrouble(_Task):
    """Tried again as a whole, with backoff, while the state Redis (the ledger) is away."""

    autoretry_for = (StateError,)
    retry_backoff = 2
    retry_backoff_max = 30
    retry_jitter = True
    max_retries = 10


class DeadLetterOnFailure(RetryOnStateTrouble):
    """An events task whose failure escaped the pipeline's per-event isolation.

    A batch is split, one task per event, so that the event that fails it fails alone; a task
    of one event dead-letters it with the reason. Its events stay in the ledger meanwhile: if
    the state Redis or the broker is what failed, the ledger sends them again later.
    """

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        messages = list(args[0]) if args and isinstance(args[0], list) else []
        app = cast("WarmerCelery", self.app)
        if isinstance(exc, StateError) or not messages:
            return  # the ledger has them; nothing else can be written now
        try:
            if len(messages) > 1:
                for message in messages:
                    app.context.publish([message])
                return
            reason = f"task {task_id} failed: {exc!r}"[:500]
            app.context.state.dead_letter([(reason, messages[0])])
            app.context.state.untrack(messages)
        except Exception as trouble:  # the ledger still has them: they come back when due
            _log.warning("task %s failed, and so did its failure handling: %s", task_id, trouble)


class RetryOnTrouble(_Task):
    """A scheduled job: tried again, with backoff, on an error whose type says a retry can help
    (Redis or the storage away); failed at once on any other (not found, invalid: no retry
    changes the store's answer)."""

    autoretry_for = RETRYABLE_ERRORS
    dont_autoretry_for = PERMANENT_ERRORS
    retry_backoff = 5
    max_retries = 5


def another_try(task: _Task) -> bool:
    """True when this run of ``task`` follows another of the same message: a retry, or a
    redelivery after a worker died holding it (the broker marks it redelivered)."""
    request = task.request
    delivery = request.delivery_info or {}
    return bool(request.retries) or bool(delivery.get("redelivered"))
