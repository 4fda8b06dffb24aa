"""``warmer fsck``: the cache audited against the store, in this process."""

from __future__ import annotations

from typing import Annotated, Final

import typer
from rich.table import Table

from worker.cli.blobs import open_service
from worker.cli.console import (
    EXIT_ERROR,
    JsonOption,
    err,
    fail,
    out,
    print_json,
    progress_bar,
)
from worker.cli.jobs import record_last
from worker.core.audit import DEFAULT_AUDIT_BATCH, AuditSummary, Repair, audit
from worker.errors import WarmerError

__all__ = ["EXIT_FOUND", "fsck"]

#: Exit status when the audit found stale or wrong entries (repaired or not).
EXIT_FOUND: Final = 1

# The findings, as the summary table names them.
_ROWS: Final = (
    ("stale_members", "memberships whose link is gone (deleted content served)"),
    ("unstored_members", "memberships of blobs the store has no data of"),
    ("stale_descriptors", "descriptors of blobs whose data is gone"),
    ("wrong_descriptors", "descriptors whose size or media type differ from the store's"),
)


def fsck(
    ctx: typer.Context,
    sample: Annotated[
        int | None,
        typer.Option(
            "--sample",
            min=1,
            metavar="N",
            help="Check N entries picked at random instead of the whole cache.",
        ),
    ] = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Forget the stale entries and write the wrong ones again from the store "
            "(through the same re-checked write as events: a delete always wins).",
        ),
    ] = False,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Entries checked per cache read (and S3 listing).")
    ] = DEFAULT_AUDIT_BATCH,
    as_json: JsonOption = False,
) -> None:
    """Audit the cache against the store: exit 0 when clean, 1 when it found stale or wrong
    entries, 2 when it could not check (the store or the cache away, entries unanswered)."""
    service = open_service(ctx)
    with progress_bar() as progress:
        task = progress.add_task("checking", total=None) if progress else None

        def report(s: AuditSummary) -> None:
            if progress is not None and task is not None:
                progress.update(task, description=f"{s.checked} checked, {s.found} found")

        try:
            summary = audit(
                service.cache,
                service.store,
                service.writer,
                repair=Repair.ALL if repair else Repair.NONE,
                sample=sample,
                batch=batch_size,
                on_progress=report,
            )
        except WarmerError as exc:
            fail(str(exc))
    record_last(ctx, "audit", summary.as_dict())
    if as_json:
        print_json(summary.as_dict())
    else:
        out.print(_table(summary))
    if summary.found:
        raise typer.Exit(EXIT_FOUND)
    if summary.errors:
        err.print(
            f"warmer: {summary.errors} entries could not be checked: the store did not answer "
            "(see the warnings above)"
        )
        raise typer.Exit(EXIT_ERROR)


def _table(summary: AuditSummary) -> Table:
    what = f"a sample of {summary.checked}" if summary.sampled else "the whole cache"
    table = Table(title=f"warmer fsck: {what}, in {summary.seconds:.2f}s", title_justify="left")
    table.add_column("finding")
    table.add_column("entries", justify="right")
    for field, label in _ROWS:
        table.add_row(label, str(getattr(summary, field)))
    table.add_section()
    table.add_row("checked (memberships, descriptors)", f"{summary.members}, {summary.descriptors}")
    table.add_row("repositories", str(summary.repositories))
    table.add_row("repaired", str(summary.repaired) if summary.repair != "none" else "-")
    table.add_row("not checked: the store did not answer", str(summary.errors))
    table.add_row("skipped: not a registry's entry", str(summary.skipped))
    if summary.store_requests:
        table.add_row("S3 requests", str(summary.store_requests))
    return table
