"""Hit/miss counters of the cached service, shaped like the original's ``layerInfoCacheMetrics``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["Counters", "Tally"]


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
class Counters:
    """Exists and Fetch, each Requests/Hits/Misses: the figures ``cachedLayerService`` kept.

    Not shared between threads: each service (each task, each CLI run) owns its own and
    reports it; adding them up across a cluster is the state store's job.
    """

    exists: Tally = field(default_factory=Tally)
    fetch: Tally = field(default_factory=Tally)

    def add(self, other: Counters) -> None:
        """Add another set of counters into this one."""
        self.exists.add(other.exists)
        self.fetch.add(other.fetch)

    def as_dict(self) -> dict[str, dict[str, int]]:
        """``{"exists": {"requests", "hits", "misses"}, "fetch": {...}}``, for JSON."""
        return asdict(self)
