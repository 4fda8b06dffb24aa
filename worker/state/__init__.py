"""The warmer's own Redis: :class:`StateStore` spells its keys; :mod:`ledger` keeps every
accepted event until a task is done with it; :mod:`figures` adds up what the warmer did."""

from worker.state.store import StateStore

__all__ = ["StateStore"]
