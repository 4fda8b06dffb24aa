"""The ``warmer`` command line: look-ups and re-warm, in-process, no broker needed.

Exit codes: 0 done (``exists``: the blob exists); 1 the blob does not exist or was not found;
2 the command could not run (bad input, bad configuration, an unreachable store or Redis).
Results go to stdout (with ``--json`` the last line is one JSON object); progress, warnings and
errors go to stderr.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Annotated

import typer
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tasks.jobs import REWARM_TASK
from worker import __version__
from worker.celery_app import create_app
from worker.cli_ops import register_ops
from worker.clients import build_service, build_state
from worker.console import EXIT_NOT_FOUND, err, fail, out, print_json, settings_of
from worker.errors import BlobNotFoundError, WarmerError
from worker.reconcile import reconcile
from worker.rewarm import DEFAULT_BATCH_SIZE, RewarmSummary, rewarm
from worker.service import CachedBlobService
from worker.settings import load_settings

__all__ = ["app", "main"]

app = typer.Typer(
    name="warmer",
    help="Keeps a Docker/OCI registry's Redis blob-descriptor cache warm.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on the last line.")]
RepositoryArgument = Annotated[str, typer.Argument(help="Repository name, e.g. team/app.")]
DigestArgument = Annotated[str, typer.Argument(help="Blob digest, e.g. sha256:...")]


def _service(ctx: typer.Context) -> CachedBlobService:
    try:
        service = build_service(settings_of(ctx))
        service.store.check()
    except WarmerError as exc:
        fail(str(exc))
    return service


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs.")] = 0,
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        out.print(__version__)
        raise typer.Exit()
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, show_time=False)],
        force=True,
    )
    try:
        ctx.obj = load_settings()
    except WarmerError as exc:
        fail(str(exc))


@app.command()
def exists(
    ctx: typer.Context,
    repository: RepositoryArgument,
    digest: DigestArgument,
    as_json: JsonOption = False,
) -> None:
    """Does REPOSITORY hold blob DIGEST? Asks the cache, then the store (exit 1 when not)."""
    service = _service(ctx)
    try:
        found = service.exists(repository, digest)
    except WarmerError as exc:
        fail(str(exc))
    hit = service.counters.exists.hits > 0
    if as_json:
        print_json(
            {
                "repository": repository,
                "digest": digest,
                "exists": found,
                "hit": hit,
                "counters": service.counters.as_dict(),
            }
        )
    else:
        source = "cache" if hit else "store"
        out.print(f"{repository}@{digest}: {'exists' if found else 'not found'} ({source})")
    if not found:
        raise typer.Exit(EXIT_NOT_FOUND)


@app.command()
def fetch(
    ctx: typer.Context,
    repository: RepositoryArgument,
    digest: DigestArgument,
    as_json: JsonOption = False,
) -> None:
    """Describe blob DIGEST of REPOSITORY, warming the cache on a miss (exit 1 when absent)."""
    service = _service(ctx)
    try:
        desc = service.fetch(repository, digest)
    except BlobNotFoundError as exc:
        if as_json:
            print_json(
                {
                    "repository": repository,
                    "digest": digest,
                    "error": str(exc),
                    "counters": service.counters.as_dict(),
                }
            )
        else:
            err.print(f"warmer: {exc}", soft_wrap=True)
        raise typer.Exit(EXIT_NOT_FOUND) from None
    except WarmerError as exc:
        fail(str(exc))
    hit = service.counters.fetch.hits > 0
    if as_json:
        print_json(
            {
                "repository": repository,
                "digest": desc.digest,
                "size": desc.size,
                "media_type": desc.media_type,
                "path": desc.path,
                "hit": hit,
                "counters": service.counters.as_dict(),
            }
        )
        return
    out.print(f"{repository}@{desc.digest}")
    out.print(f"  size:       {desc.size}")
    out.print(f"  media type: {desc.media_type}")
    if desc.path:
        out.print(f"  path:       {desc.path}")
    out.print(f"  cache:      {'hit' if hit else 'miss (warmed from the store)'}")


@app.command("rewarm")
def rewarm_command(
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
        typer.Option("--enqueue", help="Hand it to the workers (a task per repository)."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Walk the store and warm every repository's blobs and manifests, in this process."""
    if enqueue:
        _enqueue_rewarm(ctx, as_json)
        return
    service = _service(ctx)
    with _progress() as progress:
        task = progress.add_task("warming", total=None) if progress else None

        def report(s: RewarmSummary) -> None:
            if progress is not None and task is not None:
                progress.update(task, description=_describe(s))

        try:
            summary = rewarm(service, repo or None, batch_size=batch_size, on_progress=report)
        except WarmerError as exc:
            fail(str(exc))
    _record_last(ctx, "rewarm", summary.as_dict())
    if as_json:
        print_json(summary.as_dict())
    else:
        out.print(f"rewarm: {_describe(summary)} in {summary.seconds:.2f}s")
    if summary.errors:
        err.print(f"warmer: {summary.errors} blobs could not be warmed (see the warnings above)")


@app.command("reconcile")
def reconcile_command(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be evicted; change nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Evict cached entries whose link or blob data is gone from the store (after GC)."""
    service = _service(ctx)
    try:
        summary = reconcile(service.cache, service.store, dry_run=dry_run)
    except WarmerError as exc:
        fail(str(exc))
    if not dry_run:
        _record_last(ctx, "reconcile", summary.as_dict())
    if as_json:
        print_json(summary.as_dict())
        return
    verb = "would evict" if dry_run else "evicted"
    out.print(
        f"reconcile: {summary.repositories} repositories, {summary.members} members "
        f"({verb} {summary.evicted_members}), {summary.descriptors} descriptors "
        f"({verb} {summary.evicted_descriptors}), {summary.skipped} skipped, "
        f"in {summary.seconds:.2f}s"
    )


def _enqueue_rewarm(ctx: typer.Context, as_json: bool) -> None:
    try:
        task_id = create_app(settings_of(ctx)).send_task(REWARM_TASK).id
    except Exception as exc:  # the broker client's own errors: say which broker, in one line
        fail(f"could not hand the re-warm to the broker: {exc}")
    if as_json:
        print_json({"task_id": task_id})
    else:
        out.print(f"rewarm: handed to the workers as task {task_id} (Flower shows its progress)")


def _record_last(ctx: typer.Context, job: str, summary: Mapping[str, object]) -> None:
    # For /metrics and `warmer stats`; a CLI-only set-up may have no state Redis: no matter.
    try:
        build_state(settings_of(ctx)).record_last(job, {**summary, "at": time.time()})
    except WarmerError as exc:
        logging.getLogger(__name__).debug("not recorded: %s", exc)


def _describe(s: RewarmSummary) -> str:
    return (
        f"{s.repositories} repositories, {s.blobs} blobs, {s.manifests} manifests "
        f"({s.hits} hits, {s.misses} misses, {s.errors} errors)"
    )


class _NoProgress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress() -> Progress | _NoProgress:
    # A bar only for a person watching: never in a pipe, a log file or CI output.
    if not err.is_terminal:
        return _NoProgress()
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


register_ops(app)


def main() -> None:
    """Entry point of the ``warmer`` console script."""
    app()
