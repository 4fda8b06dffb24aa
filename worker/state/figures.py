"""The warmer's figures: one type, :class:`Figures`, from a single lookup to the cluster's total.

A cached service counts into a :class:`Figures` (Exists and Fetch, each a :class:`Tally` of
requests, hits and misses: what the original ``cachedLayerService`` kept), a batch adds what it
warmed and evicted, and every task adds its figures, in all and per repository, to the state
Redis in one atomic round trip (:func:`record`; a ``warmer.events`` task's go with the release
of its batch from the ledger, :func:`worker.state.ledger.settle`). :func:`take_snapshot` (the
``warmer.stats`` beat task) keeps a snapshot of the totals with the interval's rates and hit
ratio, the last :data:`SNAPSHOTS_KEPT` of them. :func:`read` is what ``warmer stats``,
``/metrics`` and ``/debug/vars`` show.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from worker.state.store import StateStore

__all__ = [
    "FIELDS",
    "OPERATIONS",
    "SNAPSHOTS_KEPT",
    "Figures",
    "Tally",
    "hit_ratio",
    "oldest_pending_age",
    "read",
    "record",
    "take_snapshot",
]

#: A day of snapshots at the default interval (60 s).
SNAPSHOTS_KEPT: Final = 1440
#: The counted operations of the cached service.
OPERATIONS: Final = ("exists", "fetch")
#: Every figure, flat, in the order tables show them.
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


@dataclass(slots=True)
class Tally:
    """Requests, hits and misses of one operation. Every request is either a hit or a miss."""

    requests: int = 0
    hits: int = 0
    misses: int = 0

    def hit(self, n: int = 1) -> None:
        """Count ``n`` requests answered by the cache."""
        self.requests += n
        self.hits += n

    def miss(self, n: int = 1) -> None:
        """Count ``n`` requests that fell back to the store."""
        self.requests += n
        self.misses += n

    def add(self, other: Tally) -> None:
        """Add another tally into this one."""
        self.requests += other.requests
        self.hits += other.hits
        self.misses += other.misses


@dataclass(slots=True)
class Figures:
    """Exists and Fetch lookups, and what was warmed, evicted and dead-lettered.

    Not shared between threads: each service (each task, each CLI run) owns its own and
    reports it; adding them up across a cluster is :func:`record`'s job.
    """

    exists: Tally = field(default_factory=Tally)
    fetch: Tally = field(default_factory=Tally)
    warmed: int = 0
    evicted: int = 0
    dead_lettered: int = 0

    def add(self, other: Figures) -> None:
        """Add other figures into these."""
        self.exists.add(other.exists)
        self.fetch.add(other.fetch)
        self.warmed += other.warmed
        self.evicted += other.evicted
        self.dead_lettered += other.dead_lettered

    def lookups(self) -> dict[str, dict[str, int]]:
        """``{"exists": {"requests", "hits", "misses"}, "fetch": {...}}``, for JSON."""
        return {
            op: {"requests": t.requests, "hits": t.hits, "misses": t.misses}
            for op, t in ((op, getattr(self, op)) for op in OPERATIONS)
        }

    def nested(self) -> dict[str, Any]:
        """The lookups nested, then ``warmed``, ``evicted``, ``dead_lettered``."""
        return {
            **self.lookups(),
            "warmed": self.warmed,
            "evicted": self.evicted,
            "dead_lettered": self.dead_lettered,
        }

    def flat(self) -> dict[str, int]:
        """Every figure of :data:`FIELDS` by its flat name (``fetch.hits``), for Redis."""
        flat = {f"{op}.{k}": v for op, tally in self.lookups().items() for k, v in tally.items()}
        return {
            **flat,
            "warmed": self.warmed,
            "evicted": self.evicted,
            "dead_lettered": self.dead_lettered,
        }

    @classmethod
    def from_flat(cls, values: Mapping[str, int]) -> Figures:
        """The inverse of :meth:`flat`; a missing figure is zero."""
        tallies = {
            op: Tally(*(int(values.get(f"{op}.{k}", 0)) for k in ("requests", "hits", "misses")))
            for op in OPERATIONS
        }
        return cls(
            exists=tallies["exists"],
            fetch=tallies["fetch"],
            warmed=int(values.get("warmed", 0)),
            evicted=int(values.get("evicted", 0)),
            dead_lettered=int(values.get("dead_lettered", 0)),
        )


def record(state: StateStore, totals: Figures, by_repository: Mapping[str, Figures]) -> None:
    """Add a task's figures to the cluster-wide ones."""
    state.add_figures(totals.flat(), {repo: f.flat() for repo, f in by_repository.items()})


def read(state: StateStore, repository: str | None = None) -> Figures:
    """The cluster-wide figures (of one repository, when given)."""
    return Figures.from_flat(state.figures(repository))


def hit_ratio(values: Mapping[str, int]) -> float | None:
    """Hits over requests, Exists and Fetch together, of flat figures; None before any."""
    requests = values["exists.requests"] + values["fetch.requests"]
    if not requests:
        return None
    return (values["exists.hits"] + values["fetch.hits"]) / requests


def oldest_pending_age(state: StateStore, now: float) -> float:
    """Seconds since the oldest event no task is done with was accepted; 0 when none waits
    (never below 0: receivers' clocks may differ a little)."""
    oldest = state.oldest_pending()
    return 0.0 if oldest is None else max(0.0, now - oldest)


def take_snapshot(state: StateStore, now: float) -> dict[str, Any]:
    """Snapshot the totals, with the rates and hit ratio since the previous snapshot."""
    totals = read(state).flat()
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
