"""The warmer's figures: added up cluster-wide by every task, snapshotted by a beat task.

Every task adds its counters (Exists and Fetch x Requests, Hits, Misses; warmed, evicted,
dead-lettered), in all and per repository, to the state Redis in one atomic round trip
(:func:`record`). :func:`take_snapshot` (the ``warmer.stats`` beat task) keeps a snapshot of the
totals with the interval's rates and hit ratio, the last :data:`SNAPSHOTS_KEPT` of them.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from worker.pipeline import BatchResult
from worker.state import StateStore

__all__ = [
    "FIELDS",
    "SNAPSHOTS_KEPT",
    "figures",
    "hit_ratio",
    "nested",
    "record",
    "take_snapshot",
]

#: A day of snapshots at the default interval (60 s).
SNAPSHOTS_KEPT: Final = 1440
#: Every figure, in the order tables show them.
FIELDS: Final = (
    "exists.requests",
    "exists.hits",
    "exists.misses",
    "fetch.requests",
    "fetch.hits",
    "fetch.misses",
    "warmed",
    "evicted",
    "dead_lettered",
)

_log = logging.getLogger(__name__)


def record(state: StateStore, result: BatchResult, dead_lettered: int) -> None:
    """Add a task's figures to the cluster-wide ones."""
    totals = {**result.totals().as_counters(), "dead_lettered": dead_lettered}
    by_repository = {repo: f.as_counters() for repo, f in result.repositories.items()}
    state.add_counters(totals, by_repository)


def figures(state: StateStore, repository: str | None = None) -> dict[str, int]:
    """Every figure, zero where nothing happened yet."""
    stored = state.counters(repository)
    return {name: stored.get(name, 0) for name in FIELDS}


def hit_ratio(values: dict[str, int]) -> float | None:
    """Hits over requests, Exists and Fetch together; None before any request."""
    requests = values["exists.requests"] + values["fetch.requests"]
    if not requests:
        return None
    return (values["exists.hits"] + values["fetch.hits"]) / requests


def nested(values: dict[str, int]) -> dict[str, Any]:
    """``{"exists": {"requests", "hits", "misses"}, "fetch": {...}, "warmed", ...}``."""
    out: dict[str, Any] = {"exists": {}, "fetch": {}}
    for name, value in values.items():
        group, _, field = name.partition(".")
        if field:
            out[group][field] = value
        else:
            out[name] = value
    return out


def take_snapshot(state: StateStore, now: float) -> dict[str, Any]:
    """Snapshot the totals, with the rates and hit ratio since the previous snapshot."""
    totals = figures(state)
    previous = state.snapshots(1)
    snapshot: dict[str, Any] = {"at": now, "totals": totals, "hit_ratio": hit_ratio(totals)}
    if previous:
        last = previous[0]
        seconds = max(now - float(last["at"]), 1e-9)
        delta = {k: totals[k] - int(last["totals"].get(k, 0)) for k in FIELDS}
        snapshot["interval"] = {
            "seconds": round(seconds, 3),
            "delta": delta,
            "per_second": {k: round(v / seconds, 3) for k, v in delta.items()},
            "hit_ratio": hit_ratio(delta),
        }
    state.push_snapshot(snapshot, SNAPSHOTS_KEPT)
    interval = snapshot.get("interval")
    ratio = interval["hit_ratio"] if interval else snapshot["hit_ratio"]
    _log.info(
        "stats: fetch %d requests (%d hits, %d misses), exists %d, warmed %d, evicted %d, "
        "dead-lettered %d; hit ratio %s",
        totals["fetch.requests"],
        totals["fetch.hits"],
        totals["fetch.misses"],
        totals["exists.requests"],
        totals["warmed"],
        totals["evicted"],
        totals["dead_lettered"],
        "n/a" if ratio is None else f"{ratio:.1%}",
    )
    return snapshot
