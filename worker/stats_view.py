"""What ``warmer stats`` shows: the figures as JSON, or as tables for a terminal."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group
from rich.table import Table

from worker.state import StateStore
from worker.stats import figures, hit_ratio, nested

__all__ = ["stats_table", "stats_view"]

_INTERVALS = 10


def stats_view(state: StateStore) -> dict[str, Any]:
    """Totals (``{"exists": {...}, "fetch": {...}, ...}``), hit ratio, queues, recent intervals."""
    values = figures(state)
    intervals = [
        {"at": s["at"], **s["interval"]} for s in state.snapshots(_INTERVALS) if "interval" in s
    ]
    return {
        **nested(values),
        "hit_ratio": hit_ratio(values),
        "dead_letters": state.dead_letter_count(),
        "pending_events": state.pending_count(),
        "last_rewarm": state.last("rewarm"),
        "last_reconcile": state.last("reconcile"),
        "intervals": intervals,
    }


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def stats_table(view: dict[str, Any]) -> Group:
    """Tables for a terminal."""
    totals = Table("operation", "requests", "hits", "misses", title="cache lookups, all workers")
    for op in ("exists", "fetch"):
        t = view[op]
        totals.add_row(op, str(t["requests"]), str(t["hits"]), str(t["misses"]))
    other = Table("figure", "value", title=f"hit ratio {_ratio(view['hit_ratio'])}")
    for key in ("warmed", "evicted", "dead_lettered", "dead_letters", "pending_events"):
        other.add_row(key.replace("_", " "), str(view[key]))
    recent = Table(
        "at", "seconds", "fetch/s", "warmed/s", "hit ratio", title="recent intervals, newest first"
    )
    for interval in view["intervals"]:
        rate = interval["per_second"]
        recent.add_row(
            time.strftime("%H:%M:%S", time.localtime(interval["at"])),
            f"{interval['seconds']:.0f}",
            f"{rate['fetch.requests']:.1f}",
            f"{rate['warmed']:.1f}",
            _ratio(interval["hit_ratio"]),
        )
    return Group(totals, other, recent)
