"""What Celery's Redis result backend holds: one metadata dict per task."""

from __future__ import annotations

import json
from typing import Any

import redis

__all__ = ["task_metas"]


def task_metas(backend: redis.Redis) -> list[dict[str, Any]]:
    """The metadata of every task in the result backend's DB (status, name, result...)."""
    metas = []
    for key in backend.scan_iter("celery-task-meta-*"):
        raw = backend.get(key)
        if raw:
            metas.append(json.loads(raw))
    return metas
