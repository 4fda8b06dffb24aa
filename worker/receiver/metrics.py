"""The figures for scrapers: Prometheus text (``/metrics``) and expvar JSON (``/debug/vars``).

Both read the cluster-wide figures from the state Redis when asked, so every receiver serves
the same numbers, whichever worker did the work. ``/debug/vars`` has the shape the original
``cachedLayerService`` published: ``registry.cache.storage.layerinfo.{Exists,Fetch}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from worker.state import StateStore
from worker.state.figures import OPERATIONS, read

__all__ = ["WarmerCollector", "expvar", "prometheus_text"]


class WarmerCollector(Collector):
    """Reads the warmer's figures from the state Redis at each scrape."""

    def __init__(self, state: StateStore) -> None:
        self._state = state

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        values = read(self._state).flat()
        for kind, help_text in (
            ("requests", "Cache lookups"),
            ("hits", "Lookups the cache answered"),
            ("misses", "Lookups that went to the store"),
        ):
            family = CounterMetricFamily(
                f"warmer_cache_{kind}", f"{help_text}, by operation.", labels=["operation"]
            )
            for operation in OPERATIONS:
                family.add_metric([operation], values[f"{operation}.{kind}"])
            yield family
        for name, help_text in (
            ("warmed", "Blobs and descriptors written to the cache."),
            ("evicted", "Digests evicted after a delete."),
            ("dead_lettered", "Events given up on."),
        ):
            yield CounterMetricFamily(f"warmer_{name}", help_text, value=values[name])
        yield GaugeMetricFamily(
            "warmer_dead_letters",
            "Events waiting in the dead-letter list.",
            value=self._state.dead_letter_count(),
        )
        yield CounterMetricFamily(
            "warmer_dead_letters_dropped",
            "Dead letters dropped, oldest first, to keep the list within its cap.",
            value=self._state.dead_letters_dropped(),
        )
        yield GaugeMetricFamily(
            "warmer_pending_events",
            "Accepted events no task is done with yet.",
            value=self._state.pending_count(),
        )
        totals = self._state.audit_budget.totals()
        for name, help_text in (
            ("checked", "Cache entries the continuous audit checked against the store."),
            ("found", "Entries the audit found stale or wrong."),
            ("repaired", "Entries the audit forgot or wrote again."),
            ("requests", "Store requests the audit spent (on a filesystem: entries checked)."),
        ):
            yield CounterMetricFamily(f"warmer_audit_{name}", help_text, value=totals[name])
        for job in ("rewarm", "reconcile", "audit"):
            last = self._state.last(job)
            if not last:
                continue
            gauge = GaugeMetricFamily(
                f"warmer_last_{job}", f"The last {job}'s summary.", labels=["figure"]
            )
            for key, value in sorted(last.items()):
                if isinstance(value, int | float) and not isinstance(value, bool):
                    gauge.add_metric([key], float(value))
            yield gauge


def prometheus_text(state: StateStore) -> bytes:
    """The Prometheus exposition of the warmer's figures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WarmerCollector(state))
    return generate_latest(registry)


def expvar(state: StateStore) -> dict[str, Any]:
    """expvar JSON with the original's shape, plus the warmer's own figures."""
    figures = read(state)
    layerinfo = {
        op.capitalize(): {k.capitalize(): v for k, v in tally.items()}
        for op, tally in figures.lookups().items()
    }
    return {
        "registry": {"cache": {"storage": {"layerinfo": layerinfo}}},
        "warmer": {
            **figures.flat(),
            "dead_letters": state.dead_letter_count(),
            "dead_letters_dropped": state.dead_letters_dropped(),
            "pending_events": state.pending_count(),
            "audit": state.audit_budget.totals(),
        },
    }
