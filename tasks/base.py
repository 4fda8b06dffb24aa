"""The warmer's task classes: each retry policy spelled once, as class attributes Celery reads
(``autoretry_for``, ``retry_backoff``, ...), so a task names its policy by its base."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from celery import Task

from worker.errors import CacheError, StateError, StoreError

if TYPE_CHECKING:
    from worker.celeryapp import WarmerCelery

    _Task = Task[Any, Any]
else:
    _Task = Task

__all__ = ["DeadLetterOnFailure", "RetryOnStateTrouble", "RetryOnTrouble"]


class RetryOnStateTrouble(_Task):
    """Tried again as a whole, with backoff, while the state Redis (the ledger) is away."""

    autoretry_for = (StateError,)
    retry_backoff = 2
    retry_backoff_max = 30
    retry_jitter = True
    max_retries = 10


class DeadLetterOnFailure(RetryOnStateTrouble):
    """An events task: an unexpected failure dead-letters its events instead of losing them."""

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        messages = args[0] if args else []
        reason = f"task {task_id} failed: {exc!r}"
        app = cast("WarmerCelery", self.app)
        app.context.state.dead_letter((reason, m) for m in messages)
        app.context.state.untrack(messages)


class RetryOnTrouble(_Task):
    """A scheduled job: tried again, with backoff, while Redis or the storage is away."""

    autoretry_for = (CacheError, StateError, StoreError)
    retry_backoff = 5
    max_retries = 5
