"""The names of the warmer's Celery tasks: what publishers, beat and Flower know them by.

Publishers (the receiver, the command line, beat) send a task by its name and never import the
task itself; :mod:`tasks` registers each under its name.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "AUDIT_TASK",
    "EVENTS_TASK",
    "RECONCILE_TASK",
    "REDELIVER_TASK",
    "REWARM_CHUNK_TASK",
    "REWARM_REPOSITORY_TASK",
    "REWARM_RUN_SUMMARY_TASK",
    "REWARM_TASK",
    "STATS_TASK",
    "WARM_IMAGE_TASK",
    "WATCH_CACHE_TASK",
]

#: Applies a batch of event messages to the cache.
EVENTS_TASK: Final = "warmer.events"
#: Sends again what the ledger says is overdue.
REDELIVER_TASK: Final = "warmer.redeliver"
#: Snapshots the figures.
STATS_TASK: Final = "warmer.stats"
#: Plans a re-warm: a task per chunk of repositories (or shard of a large one), sent as the
#: store is walked, then one summary.
REWARM_TASK: Final = "warmer.rewarm"
REWARM_CHUNK_TASK: Final = "warmer.rewarm_chunk"
#: Named anew when its arguments changed (the run's id; it was a chord's results, under
#: "warmer.rewarm_summary"): a message of one release never reaches the other's task.
REWARM_RUN_SUMMARY_TASK: Final = "warmer.rewarm_run_summary"
#: The previous release's task a repository: kept for one release, so that the messages of a
#: re-warm queued when the workers were upgraded still warm (docs/operations.md, Upgrading).
REWARM_REPOSITORY_TASK: Final = "warmer.rewarm_repository"
#: Evicts what the store no longer holds.
RECONCILE_TASK: Final = "warmer.reconcile"
#: Notices a cache emptied or restarted, and re-warms.
WATCH_CACHE_TASK: Final = "warmer.watch_cache"
#: Audits a random sample of the cache against the store, within a budget of store requests.
AUDIT_TASK: Final = "warmer.audit"
#: Warms one image by its reference (``warmer warm --enqueue``, the receiver's ``POST /warm``).
WARM_IMAGE_TASK: Final = "warmer.warm_image"
