"""``warmer stats``: the cluster-wide figures as JSON, or as tables for a terminal."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table

from worker.cli.console import fail, out, print_json, settings_of
from worker.core.clients import build_state, state_redis
from worker.core.heal import REWARM_LOCK
from worker.errors import WarmerError
from worker.state import StateStore
from worker.state.figures import hit_ratio, oldest_pending_age, read
from worker.state.rewarmruns import RewarmRuns

__all__ = ["stats", "stats_table", "stats_view"]

_INTERVALS = 10


def stats_view(state: StateStore, runs: RewarmRuns | None = None) -> dict[str, Any]:
    """Totals (``{"exists": {...}, "fetch": {...}, ...}``), hit ratio, queues, recent intervals,
    and (``runs`` given) the fan-out re-warm under way: the lock's token names its run."""
    holder = state.lock_holder(REWARM_LOCK) if runs is not None else None
    figures = read(state)
    intervals = [
        {"at": s["at"], **s["interval"]} for s in state.snapshots(_INTERVALS) if "interval" in s
    ]
    return {
        **figures.nested(),
        "hit_ratio": hit_ratio(figures.flat()),
        "dead_letters": state.dead_letter_count(),
        "dead_letters_dropped": state.dead_letters_dropped(),
        "pending_events": state.pending_count(),
        "oldest_pending_event_seconds": round(oldest_pending_age(state, time.time()), 3),
        "push_to_warm": {k: h.summary() for k, h in state.slo.histograms().items()},
        "images_checked": state.slo.images(),
        "heal_rewarms_unconfirmed": state.heal_rewarms.read().attempts,
        "rewarm_running": runs.progress(holder) if runs is not None and holder else None,
        "last_rewarm": state.last("rewarm"),
        "last_reconcile": state.last("reconcile"),
        "last_audit": state.last("audit"),
        "audit": state.audit_budget.totals(),
        "intervals": intervals,
    }


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def stats_table(view: dict[str, Any]) -> Group:
    """Tables for a terminal."""
    totals = Table("operation", "requests", "hits", "misses", title="cache lookups, all workers")
    for op in ("exists", "fetch"):
        t = view[op]
        totals.add_row(op, str(t["requests"]), str(t["hits"]), str(t["misses"]))
    other = Table("figure", "value", title=f"hit ratio {_ratio(view['hit_ratio'])}")
    for key in (
        "warmed",
        "evicted",
        "dead_lettered",
        "dead_letters",
        "dead_letters_dropped",
        "pending_events",
        "oldest_pending_event_seconds",
        "heal_rewarms_unconfirmed",
    ):
        other.add_row(key.replace("_", " "), str(view[key]))
    for kind, latency in view["push_to_warm"].items():
        other.add_row(
            f"{kind} to warm: p50, p90, p99 (s, estimated), count",
            ", ".join(_seconds(latency[p]) for p in ("p50", "p90", "p99"))
            + f", {latency['count']}",
        )
    running = view.get("rewarm_running")
    if running is not None:
        other.add_row(
            "re-warm running: tasks done / sent, blobs, seconds",
            f"{running['done']} / {running['tasks']}{'' if running['planned'] else '+'}, "
            f"{running['blobs']}, {time.time() - running['started']:.0f}",
        )
    images = view["images_checked"]
    other.add_row("images checked: " + ", ".join(images), ", ".join(map(str, images.values())))
    audit = view["audit"]
    other.add_row(
        "audit: checked, found, repaired",
        f"{audit['checked']}, {audit['found']}, {audit['repaired']}",
    )
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


def stats(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on the last line.")] = (
        False
    ),
    watch: Annotated[bool, typer.Option("--watch", help="Refresh every 2 s until Ctrl-C.")] = (
        False
    ),
) -> None:
    """The warmer's cluster-wide figures: totals, hit ratio, recent intervals."""
    try:
        state = build_state(settings_of(ctx))
        runs = RewarmRuns(state_redis(settings_of(ctx)))
        view = stats_view(state, runs)
    except WarmerError as exc:
        fail(str(exc))
    if as_json:
        print_json(view)
        return
    if not watch:
        out.print(stats_table(view))
        return
    with Live(stats_table(view), console=out, refresh_per_second=1) as live:
        try:
            while True:
                time.sleep(2)
                live.update(stats_table(stats_view(state, runs)))
        except KeyboardInterrupt:
            pass
