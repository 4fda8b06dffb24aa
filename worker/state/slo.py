"""The figures an SRE sets objectives on, cluster-wide: how long a push takes to become warm,
and what ``warmer check`` and ``GET /check`` found.

Push-to-warm runs from the registry's timestamp of a manifest push (its notification's
``timestamp``) to the moment a worker has written the cache entries of every blob the manifest
names. Workers add each observation to fixed buckets in the state Redis, and every receiver's
``/metrics`` reads them, so the histogram is the cluster's, whichever worker observed. A
duration below zero (the registry's clock ahead of the worker's) is clamped to 0 and counted
as clock skew: a negative duration is never recorded. A push time that cannot be right (over
:data:`MAX_AGE` before the warm, or over :data:`MAX_AHEAD` after it: a clock far off, a Harbor
``occur_at`` of another epoch) measures nothing: no observation, so it cannot skew the figures.

One hash, ``warmer:slo`` (spelled in :mod:`worker.state.store`), with fixed fields:

    push_to_warm:<kind>:<le>      observations of ``kind`` above the previous bound, up to
                                  ``le`` (each bucket its own count, not cumulative)
    push_to_warm:<kind>:count     observations of ``kind``
    push_to_warm:<kind>:sum       their seconds, in all
    clock_skew:<kind>             observations clamped to 0
    images:<verdict>              images checked, by verdict (:data:`VERDICTS`)

The kinds are :data:`KINDS` and the buckets :data:`BUCKETS`, so the hash never grows past
their fields, and it expires :data:`TTL_SECONDS` after its last write. Percentiles are
estimated from the buckets (:meth:`Histogram.quantile`), as Prometheus's
``histogram_quantile`` does: within a bucket, linearly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import redis

from worker.state.redisio import state_call, text

__all__ = [
    "BUCKETS",
    "KINDS",
    "MAX_AGE",
    "MAX_AHEAD",
    "PUSH",
    "QUANTILES",
    "TTL_SECONDS",
    "VERDICTS",
    "Histogram",
    "SloFigures",
    "bucket_label",
]

#: Upper bounds of the push-to-warm buckets, in seconds: from a warm within a batch's wait to a
#: backlog of an hour, the last one everything else.
BUCKETS: Final = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    math.inf,
)  # fmt: skip
#: The kind of a manifest push (the registry's action): the event that makes an image pullable.
PUSH: Final = "push"
#: Event kinds measured: the ``kind`` label's values.
KINDS: Final = (PUSH,)
#: What a checked image is, by its worst blob: ``stale`` (the registry would answer what the
#: store does not hold), else ``missing`` (broken: no warm helps), else ``cold``, else ``warm``.
VERDICTS: Final = ("warm", "cold", "stale", "missing")
#: The percentiles ``warmer stats`` and ``/debug/vars`` show.
QUANTILES: Final = (0.5, 0.9, 0.99)
#: Push times this long before the warm, or this far after it, are implausible: not observed.
MAX_AGE: Final = 30 * 86_400.0
MAX_AHEAD: Final = 3600.0
#: The hash outlives its last write by this much: an idle warmer's figures go (its counters
#: start again from 0, which Prometheus takes for a restart).
TTL_SECONDS: Final = 30 * 86_400


def bucket_label(bound: float) -> str:
    """A bucket's upper bound as Prometheus writes ``le``: ``0.05``, ``1.0``, ``+Inf``."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


@dataclass(frozen=True, slots=True)
class Histogram:
    """One kind's push-to-warm figures: cumulative bucket counts (``le`` order), as Prometheus
    exposes them, their count and sum, and the observations clamped for clock skew."""

    kind: str
    cumulative: tuple[int, ...]
    count: int
    sum: float
    clock_skew: int

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile estimated from the buckets (None before any observation).

        Linear within the bucket that holds it; in the last bucket (no upper bound), the
        highest finite bound: an estimate, never a measured value.
        """
        if not self.count:
            return None
        rank = q * self.count
        below = 0
        for i, (bound, total) in enumerate(zip(BUCKETS, self.cumulative, strict=True)):
            if total >= rank and total > below:
                if math.isinf(bound):
                    return BUCKETS[i - 1]
                lower = BUCKETS[i - 1] if i else 0.0
                return lower + (bound - lower) * (rank - below) / (total - below)
            below = total
        return BUCKETS[-2]

    def summary(self) -> dict[str, Any]:
        """JSON-ready: count, sum, clock skew, and p50, p90, p99 (estimated, rounded to ms)."""
        percentiles = {
            f"p{round(q * 100)}": None if (v := self.quantile(q)) is None else round(v, 3)
            for q in QUANTILES
        }
        return {
            "count": self.count,
            "sum": round(self.sum, 3),
            "clock_skew": self.clock_skew,
            **percentiles,
        }


def _bucket(seconds: float) -> str:
    for bound in BUCKETS:
        if seconds <= bound:
            return bucket_label(bound)
    return bucket_label(math.inf)


class SloFigures:
    """Push-to-warm observations and images checked, in the state Redis's ``warmer:slo``."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._redis = client
        self._key = key

    def observe(self, kind: str, durations: Iterable[float]) -> int:
        """Add push-to-warm ``durations`` (seconds) of ``kind``; those below 0 count as clock
        skew, and as 0; one that is no finite number, or implausible (over :data:`MAX_AGE`,
        or below -:data:`MAX_AHEAD`), is left out. Return how many were clamped. One
        transaction."""
        if kind not in KINDS:
            raise ValueError(f"unknown push-to-warm kind {kind!r}: one of {KINDS}")
        increments: dict[str, int] = {}
        total = 0.0
        clamped = 0
        for measured in durations:
            if not -MAX_AHEAD <= measured <= MAX_AGE:
                continue  # NaN, or a push time that cannot be right: it would skew the figures
            seconds = max(measured, 0.0)
            clamped += measured < 0
            field = f"push_to_warm:{kind}:{_bucket(seconds)}"
            increments[field] = increments.get(field, 0) + 1
            total += seconds
        count = sum(increments.values())
        if not count:
            return 0
        pipe = self._redis.pipeline(transaction=True)
        for field, n in increments.items():
            pipe.hincrby(self._key, field, n)
        pipe.hincrby(self._key, f"push_to_warm:{kind}:count", count)
        pipe.hincrbyfloat(self._key, f"push_to_warm:{kind}:sum", total)
        if clamped:
            pipe.hincrby(self._key, f"clock_skew:{kind}", clamped)
        pipe.expire(self._key, TTL_SECONDS)
        state_call(pipe.execute)
        return clamped

    def count_images(self, verdicts: Mapping[str, int]) -> None:
        """Add images checked, by verdict (:data:`VERDICTS`)."""
        unknown = set(verdicts).difference(VERDICTS)
        if unknown:
            raise ValueError(f"unknown verdicts {sorted(unknown)}: one of {VERDICTS}")
        added = {v: n for v, n in verdicts.items() if n}
        if not added:
            return
        pipe = self._redis.pipeline(transaction=True)
        for verdict, n in added.items():
            pipe.hincrby(self._key, f"images:{verdict}", n)
        pipe.expire(self._key, TTL_SECONDS)
        state_call(pipe.execute)

    def histograms(self) -> dict[str, Histogram]:
        """Each kind's push-to-warm histogram (zeros before any observation)."""
        raw = self._fields()
        histograms = {}
        for kind in KINDS:
            running = 0
            cumulative = []
            for bound in BUCKETS:
                running += int(raw.get(f"push_to_warm:{kind}:{bucket_label(bound)}", 0))
                cumulative.append(running)
            histograms[kind] = Histogram(
                kind,
                tuple(cumulative),
                int(raw.get(f"push_to_warm:{kind}:count", 0)),
                float(raw.get(f"push_to_warm:{kind}:sum", 0.0)),
                int(raw.get(f"clock_skew:{kind}", 0)),
            )
        return histograms

    def images(self) -> dict[str, int]:
        """Images checked so far, by verdict (zeros before any)."""
        raw = self._fields()
        return {verdict: int(raw.get(f"images:{verdict}", 0)) for verdict in VERDICTS}

    def _fields(self) -> dict[str, str]:
        raw = state_call(self._redis.hgetall, self._key)
        return {text(k): text(v) for k, v in raw.items()}
