"""The figures for scrapers: Prometheus text (``/metrics``) and expvar JSON (``/debug/vars``).

Both read the cluster-wide figures from the state Redis when asked, so every receiver serves
the same numbers, whichever worker did the work: the push-to-warm histogram too, whose buckets
the workers add to (:mod:`worker.state.slo`). ``/debug/vars`` has the shape the original
``cachedLayerService`` published: ``registry.cache.storage.layerinfo.{Exists,Fetch}``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from worker.state import StateStore
from worker.state.figures import OPERATIONS, oldest_pending_age, read
from worker.state.slo import BUCKETS, VERDICTS, bucket_label

__all__ = ["WarmerCollector", "expvar", "prometheus_text"]


class WarmerCollector(Collector):
    """Reads the warmer's figures from the state Redis at each scrape."""

    def __init__(self, state: StateStore) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
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
            ("dead_lettered", "Events dead-lettered, by receivers and workers alike."),
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
        yield GaugeMetricFamily(
            "warmer_oldest_pending_event_seconds",
            "Age of the oldest accepted event no task is done with yet (0 when none waits).",
            value=oldest_pending_age(self._state, time.time()),
        )
        yield from self._slo()
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

    def _slo(self) -> Iterator[Metric]:
        slo = self._state.slo
        histogram = HistogramMetricFamily(
            "warmer_push_to_warm_seconds",
            "Seconds from the registry's timestamp of a manifest push to its blobs in the cache, "
            "by event kind (clock skew clamped to 0).",
            labels=["kind"],
        )
        skew = CounterMetricFamily(
            "warmer_clock_skew_events",
            "Push-to-warm observations below 0 (the registry's clock ahead), clamped to 0.",
            labels=["kind"],
        )
        for kind, figures in slo.histograms().items():
            buckets = [
                (bucket_label(b), float(n))
                for b, n in zip(BUCKETS, figures.cumulative, strict=True)
            ]
            histogram.add_metric([kind], buckets, figures.sum)
            skew.add_metric([kind], figures.clock_skew)
        yield histogram
        yield skew
        checked = CounterMetricFamily(
            "warmer_images_checked",
            "Image checks (warmer check, GET /check) by verdict, the image's worst blob's state:"
            " each check counts, an image checked twice counts twice.",
            labels=["verdict"],
        )
        images = slo.images()
        for verdict in VERDICTS:
            checked.add_metric([verdict], images[verdict])
        yield checked


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
            "oldest_pending_event_seconds": round(oldest_pending_age(state, time.time()), 3),
            "push_to_warm": {k: h.summary() for k, h in state.slo.histograms().items()},
            "images_checked": state.slo.images(),
            "audit": state.audit_budget.totals(),
        },
    }
