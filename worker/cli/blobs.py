"""``warmer exists`` and ``warmer fetch``: one blob, through the cache, in this process."""

from __future__ import annotations

from typing import Annotated

import typer

from worker.cli.console import EXIT_NOT_FOUND, JsonOption, err, fail, out, print_json, settings_of
from worker.core.blobservice import CachedBlobService
from worker.core.clients import build_service
from worker.errors import BlobNotFoundError, WarmerError

__all__ = ["exists", "fetch", "open_service"]

RepositoryArgument = Annotated[str, typer.Argument(help="Repository name, e.g. team/app.")]
DigestArgument = Annotated[str, typer.Argument(help="Blob digest, e.g. sha256:...")]


def open_service(ctx: typer.Context) -> CachedBlobService:
    """The cached service of the settings, its store checked; exit 2 with the reason if not."""
    try:
        service = build_service(settings_of(ctx))
        service.store.check()
    except WarmerError as exc:
        fail(str(exc))
    return service


def exists(
    ctx: typer.Context,
    repository: RepositoryArgument,
    digest: DigestArgument,
    as_json: JsonOption = False,
) -> None:
    """Does REPOSITORY hold blob DIGEST? Asks the cache, then the store (exit 1 when not)."""
    service = open_service(ctx)
    try:
        found = service.exists(repository, digest)
    except WarmerError as exc:
        fail(str(exc))
    hit = service.figures.exists.hits > 0
    if as_json:
        print_json(
            {
                "repository": repository,
                "digest": digest,
                "exists": found,
                "hit": hit,
                "counters": service.figures.lookups(),
            }
        )
    else:
        source = "cache" if hit else "store"
        out.print(f"{repository}@{digest}: {'exists' if found else 'not found'} ({source})")
    if not found:
        raise typer.Exit(EXIT_NOT_FOUND)


def fetch(
    ctx: typer.Context,
    repository: RepositoryArgument,
    digest: DigestArgument,
    as_json: JsonOption = False,
) -> None:
    """Describe blob DIGEST of REPOSITORY, warming the cache on a miss (exit 1 when absent)."""
    service = open_service(ctx)
    try:
        desc = service.fetch(repository, digest)
    except BlobNotFoundError as exc:
        if as_json:
            print_json(
                {
                    "repository": repository,
                    "digest": digest,
                    "error": str(exc),
                    "counters": service.figures.lookups(),
                }
            )
        else:
            err.print(f"warmer: {exc}", soft_wrap=True)
        raise typer.Exit(EXIT_NOT_FOUND) from None
    except WarmerError as exc:
        fail(str(exc))
    hit = service.figures.fetch.hits > 0
    if as_json:
        print_json(
            {
                "repository": repository,
                "digest": desc.digest,
                "size": desc.size,
                "media_type": desc.media_type,
                "path": desc.path,
                "hit": hit,
                "counters": service.figures.lookups(),
            }
        )
        return
    out.print(f"{repository}@{desc.digest}")
    out.print(f"  size:       {desc.size}")
    out.print(f"  media type: {desc.media_type}")
    if desc.path:
        out.print(f"  path:       {desc.path}")
    out.print(f"  cache:      {'hit' if hit else 'miss (warmed from the store)'}")
