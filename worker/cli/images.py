"""``warmer check`` and ``warmer warm``: images by their references, as platform teams name them
(``shop/api:2.4.1``, ``registry.example.com:5000/shop/api@sha256:...``), given as arguments or
read from Kubernetes YAML (``-f FILE``, ``-f -`` for stdin)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Annotated, Final

import typer
from rich.table import Table

from worker.celeryapp import create_app
from worker.celeryapp.names import WARM_IMAGE_TASK
from worker.cli.blobs import open_service
from worker.cli.console import (
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    JsonOption,
    err,
    fail,
    out,
    print_json,
    progress_bar,
    settings_of,
)
from worker.cli.workloads import read_images
from worker.core.clients import build_state
from worker.core.imagecheck import ImageCheck, check_image, check_report, record_checks
from worker.core.images import WarmedImage, warm_image
from worker.errors import ForeignRegistryError, InvalidReferenceError, WarmerError
from worker.registry import manifest
from worker.registry.reference import ImageReference, image_reference

__all__ = ["EXIT_NOT_WARM", "check", "warm"]

_log = logging.getLogger(__name__)

#: ``warmer check``: some blob is cold, stale or missing.
EXIT_NOT_WARM: Final = EXIT_NOT_FOUND

ReferencesArgument = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="REF",
        help="Images: repo:tag, repo@sha256:..., or HOST[:PORT]/repo:tag with a host of "
        "WARMER_REGISTRY_HOSTS (no tag: latest).",
        show_default=False,
    ),
]
FileOption = Annotated[
    list[str] | None,
    typer.Option(
        "--filename",
        "-f",
        metavar="FILE",
        help="Kubernetes YAML (kubectl's, helm template's): every image of its workloads; "
        "'-' reads stdin. Repeatable. Images of other registries are skipped and counted.",
        show_default=False,
    ),
]
PlatformOption = Annotated[
    str | None,
    typer.Option(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="Only this platform of an index (linux/amd64). Default: every platform.",
        show_default=False,
    ),
]


@dataclass
class _Wanted:
    """The references asked for, each image once, and how many were skipped."""

    references: list[ImageReference] = field(default_factory=list)
    skipped: int = 0


def _wanted(ctx: typer.Context, given: list[str] | None, files: list[str] | None) -> _Wanted:
    # Arguments must all be this registry's; a file's images of another registry are skipped
    # (a workload's YAML names public images too), counted and logged.
    hosts = settings_of(ctx).known_hosts
    wanted = _Wanted()
    seen: set[tuple[str, str]] = set()

    def add(reference: ImageReference) -> None:
        if reference.key not in seen:
            seen.add(reference.key)
            wanted.references.append(reference)

    for text in given or ():
        try:
            add(image_reference(text, hosts))
        except InvalidReferenceError as exc:
            fail(str(exc))
    for source in files or ():
        try:
            images = read_images(source)
        except WarmerError as exc:
            fail(str(exc))
        for text in images:
            try:
                add(image_reference(text, hosts))
            except ForeignRegistryError as exc:
                wanted.skipped += 1
                _log.warning("skipped: %s", exc)
            except InvalidReferenceError as exc:
                fail(f"{'stdin' if source == '-' else source}: {exc}")
    if not wanted.references and not wanted.skipped:
        fail("no image references given: name them, or give -f FILE")
    return wanted


def _platform(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return manifest.platform(value)
    except InvalidReferenceError as exc:
        fail(str(exc))


def check(
    ctx: typer.Context,
    references: ReferencesArgument = None,
    filename: FileOption = None,
    platform: PlatformOption = None,
    as_json: JsonOption = False,
) -> None:
    """Is each image warm? Checks every manifest, config and layer of every platform in the
    cache against the store, writing nothing: exit 0 when all are warm, 1 when any is cold or
    stale, 2 when an image could not be checked (each with its reason on stderr)."""
    wanted = _wanted(ctx, references, filename)
    chosen = _platform(platform)
    service = open_service(ctx)
    checks: list[ImageCheck] = []
    errors: list[tuple[str, str]] = []
    with progress_bar() as progress:
        task = progress.add_task("checking", total=len(wanted.references)) if progress else None
        for reference in wanted.references:
            try:
                checks.append(check_image(service.cache, service.store, reference, chosen))
            except WarmerError as exc:
                errors.append((reference.text, str(exc)))
            if progress is not None and task is not None:
                progress.advance(task)
    if checks:
        record_checks(build_state(settings_of(ctx)), checks)
    report = check_report(checks, errors, wanted.skipped)
    if as_json:
        print_json(report)
    elif checks:
        out.print(_table(checks))
    _say(errors, wanted.skipped, "checked")
    if errors:
        raise typer.Exit(EXIT_ERROR)
    if not checks:  # every image skipped: a deploy gate must not pass on nothing checked
        err.print(
            "warmer: no image of this registry to check (WARMER_REGISTRY_HOSTS names the hosts "
            "under which clients reach it)"
        )
        raise typer.Exit(EXIT_ERROR)
    if not report["warm"]:
        raise typer.Exit(EXIT_NOT_WARM)


def warm(
    ctx: typer.Context,
    *,
    references: ReferencesArgument = None,
    filename: FileOption = None,
    platform: PlatformOption = None,
    enqueue: Annotated[
        bool,
        typer.Option("--enqueue", help="Hand each image to the workers, a task an image."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Warm exactly these images (every platform unless --platform) through the same write
    path as events: in this process with a progress bar, or as one task an image (--enqueue,
    which Flower shows). Exit 0 when every image was warmed (or handed over), 2 when one
    could not be (its reason on stderr)."""
    wanted = _wanted(ctx, references, filename)
    chosen = _platform(platform)
    if enqueue:
        _enqueue(ctx, wanted, chosen, as_json)
        return
    service = open_service(ctx)
    warmed: list[WarmedImage] = []
    errors: list[tuple[str, str]] = []
    with progress_bar() as progress:
        task = progress.add_task("warming", total=len(wanted.references)) if progress else None
        for reference in wanted.references:
            if progress is not None and task is not None:
                progress.update(task, description=f"warming {reference.text}")
            try:
                warmed.append(warm_image(service, reference, chosen))
            except WarmerError as exc:
                errors.append((reference.text, str(exc)))
            if progress is not None and task is not None:
                progress.advance(task)
    if as_json:
        print_json(
            {
                "images": [w.as_dict() for w in warmed],
                "errors": [{"reference": r, "error": e} for r, e in errors],
                "skipped": wanted.skipped,
            }
        )
    else:
        for w in warmed:
            platforms = ", ".join(p.platform for p in w.image.parts if p.platform)
            where = f" ({platforms})" if platforms else ""
            out.print(
                f"{w.image.reference.text}: warmed {w.figures.warmed} blobs and manifests of "
                f"{w.image.digest}{where}"
            )
    _say(errors, wanted.skipped, "warmed")
    if errors:
        raise typer.Exit(EXIT_ERROR)


def _enqueue(ctx: typer.Context, wanted: _Wanted, platform: str | None, as_json: bool) -> None:
    try:
        app = create_app(settings_of(ctx))
        sent = [
            (ref.text, app.send_task(WARM_IMAGE_TASK, args=[ref.text, platform]).id)
            for ref in wanted.references
        ]
    except Exception as exc:  # the broker client's own errors: say which broker, in one line
        fail(f"could not hand the images to the broker: {exc}")
    if as_json:
        tasks = [{"reference": ref, "task_id": task_id} for ref, task_id in sent]
        print_json({"tasks": tasks, "skipped": wanted.skipped})
    else:
        for ref, task_id in sent:
            out.print(f"{ref}: handed to the workers as task {task_id}")
    _say([], wanted.skipped, "warmed")


def _say(errors: list[tuple[str, str]], skipped: int, done: str) -> None:
    # One line an image that could not be checked or warmed, on stderr; then the skips.
    for reference, reason in errors:
        err.print(f"warmer: error: {reference}: {reason}")
    if skipped:
        err.print(f"warmer: {skipped} references to other registries were skipped, not {done}")


def _table(checks: list[ImageCheck]) -> Table:
    table = Table(title="warmer check", title_justify="left")
    # A reference is folded, never cut short: it is what a script or a person copies.
    table.add_column("image", overflow="fold")
    table.add_column("platform", overflow="fold")
    for column in ("blobs", "warm", "cold", "stale", "missing"):
        table.add_column(column, justify="right")
    for c in checks:
        for p in c.platforms:
            counts = p.as_dict()
            table.add_row(
                c.image.reference.text,
                p.platform or "-",
                *(str(counts[k]) for k in ("blobs", "warm", "cold", "stale", "missing")),
            )
    return table
