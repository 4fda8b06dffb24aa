"""The cache checked against the store (Celery beat): ``warmer.reconcile`` (the whole cache, its
stale entries evicted) and ``warmer.audit`` (a random sample, within a budget of store
requests that pulls earn; stale entries forgotten, wrong ones written again)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from tasks.base import RetryOnTrouble
from worker.celeryapp.names import AUDIT_TASK, RECONCILE_TASK
from worker.core.audit import audit_within_budget
from worker.core.reconcile import reconcile

if TYPE_CHECKING:
    from worker.celeryapp import WarmerCelery

__all__ = ["register_check_tasks"]


def register_check_tasks(app: WarmerCelery) -> None:
    """Register reconcile and the audit on ``app``."""

    @app.task(shared=False, name=RECONCILE_TASK, base=RetryOnTrouble)
    def reconcile_all() -> dict[str, Any]:
        summary = reconcile(app.context.cache, app.context.store).as_dict()
        app.context.state.record_last("reconcile", {**summary, "at": time.time()})
        return summary

    @app.task(shared=False, name=AUDIT_TASK, base=RetryOnTrouble)
    def audit() -> dict[str, Any]:
        # The interval's share of the per-minute cap bounds one look, however many pulls came.
        settings, state, service = app.settings, app.context.state, app.context.service()
        summary = audit_within_budget(
            service.cache,
            service.store,
            service.writer,
            state.audit_budget,
            pulls=state.pulls_total(),
            per_1000_pulls=settings.audit_requests_per_1000_pulls,
            cap=settings.audit_requests_per_minute * settings.audit_interval / 60,
        )
        if summary.checked:
            state.record_last("audit", {**summary.as_dict(), "at": time.time()})
        return summary.as_dict()
