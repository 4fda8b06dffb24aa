"""How every module of the state layer talks to its Redis: a Redis error of any kind becomes
one :class:`~worker.errors.StateError` (callers above never see redis-py's types), and replies
are read as text whatever the client's ``decode_responses``."""

from __future__ import annotations

from typing import Any

import redis

from worker.errors import StateError

__all__ = ["state_call", "text"]


def state_call(fn: Any, *args: Any) -> Any:
    """``fn(*args)``, its Redis error raised as a StateError."""
    try:
        return fn(*args)
    except redis.RedisError as exc:
        raise StateError(f"state Redis: {exc}") from exc


def text(value: bytes | str) -> str:
    """A reply as text."""
    return value.decode() if isinstance(value, bytes) else value
