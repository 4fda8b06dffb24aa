"""``warmer rewarm`` and ``warmer reconcile``: whole-store jobs, in this process or handed to
the workers."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Annotated

import typer

from worker.celeryapp import create_app
from worker.celeryapp.names import REWARM_TASK
from worker.cli.blobs import open_service
from worker.cli.console import (
    JsonOption,
    err,
    fail,
    out,
    print_json,
    progress_bar,
    settings_of,
)
from worker.config.settings import Settings
from worker.core.clients import build_state
from worker.core.heal import REWARM_LOCK
from worker.core.reconcile import reconcile as reconcile_store
from worker.core.rewarm import DEFAULT_BATCH_SIZE, RewarmSummary
from worker.core.rewarm import rewarm as rewarm_store
from worker.errors import WarmerError

__all__ = ["reconcile", "record_last", "rewarm"]


def rewarm(
    ctx: typer.Context,
    repo: Annotated[
        list[str] | None,
        typer.Option("--repo", help="Only this repository (repeatable). Default: all."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Digests per Redis round trip.")
    ] = DEFAULT_BATCH_SIZE,
    enqueue: Annotated[
        bool,
        typer.Option(
            "--enqueue", help="Hand it to the workers (a task per chunk of repositories)."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Walk the store and warm every repository's blobs and manifests, in this process."""
    if enqueue:
        _enqueue_rewarm(ctx, as_json)
        return
    service = open_service(ctx)
    with progress_bar() as progress:
        task = progress.add_task("warming", total=None) if progress else None

        def report(s: RewarmSummary) -> None:
            if progress is not None and task is not None:
                progress.update(task, description=_describe(s))

        try:
            summary = rewarm_store(service, repo or None, batch_size=batch_size, on_progress=report)
        except WarmerError as exc:
            fail(str(exc))
    record_last(ctx, "rewarm", summary.as_dict())
    if as_json:
        print_json(summary.as_dict())
    else:
        out.print(f"rewarm: {_describe(summary)} in {summary.seconds:.2f}s")
    if summary.errors:
        err.print(f"warmer: {summary.errors} blobs could not be warmed (see the warnings above)")


def reconcile(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be evicted; change nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Evict cached entries whose link or blob data is gone from the store (after GC)."""
    service = open_service(ctx)
    try:
        summary = reconcile_store(service.cache, service.store, dry_run=dry_run)
    except WarmerError as exc:
        fail(str(exc))
    if not dry_run:
        record_last(ctx, "reconcile", summary.as_dict())
    if as_json:
        print_json(summary.as_dict())
        return
    verb = "would evict" if dry_run else "evicted"
    out.print(
        f"reconcile: {summary.repositories} repositories, {summary.members} members "
        f"({verb} {summary.evicted_members}), {summary.descriptors} descriptors "
        f"({verb} {summary.evicted_descriptors}), {summary.skipped} skipped, "
        f"{summary.errors} left on store errors, "
        f"in {summary.seconds:.2f}s"
    )


def _enqueue_rewarm(ctx: typer.Context, as_json: bool) -> None:
    settings = settings_of(ctx)
    try:
        task_id = create_app(settings).send_task(REWARM_TASK).id
    except Exception as exc:  # the broker client's own errors: say which broker, in one line
        fail(f"could not hand the re-warm to the broker: {exc}")
    if as_json:
        print_json({"task_id": task_id})
    else:
        # Flower shows the planner and each chunk; the run as a whole is in `warmer stats`.
        out.print(
            f"rewarm: handed to the workers as task {task_id} (`warmer stats` shows the run's "
            "progress; Flower shows its single tasks)"
        )
    holder = _rewarm_lock_holder(settings)
    if holder is not None:
        # Sent all the same (exit 0: sent): the workers' planner finds the lock and skips it.
        err.print(
            f"warmer: another re-warm ({holder}) is running: this one will be skipped "
            "(`warmer stats` shows the one running)"
        )


def _rewarm_lock_holder(settings: Settings) -> str | None:
    # Said if known; a CLI-only set-up may have no state Redis: no matter.
    try:
        return build_state(settings).lock_holder(REWARM_LOCK)
    except WarmerError as exc:
        logging.getLogger(__name__).debug("re-warm lock not read: %s", exc)
        return None


def record_last(ctx: typer.Context, job: str, summary: Mapping[str, object]) -> None:
    # For /metrics and `warmer stats`; a CLI-only set-up may have no state Redis: no matter.
    try:
        build_state(settings_of(ctx)).record_last(job, {**summary, "at": time.time()})
    except WarmerError as exc:
        logging.getLogger(__name__).debug("not recorded: %s", exc)


def _describe(s: RewarmSummary) -> str:
    requests = f", {s.s3_requests} S3 requests" if s.s3_requests else ""
    return (
        f"{s.repositories} repositories, {s.blobs} blobs, {s.manifests} manifests "
        f"({s.hits} hits, {s.misses} misses, {s.errors} errors{requests})"
    )
