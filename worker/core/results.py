"""A batch lookup's answer for each digest: :class:`FetchResult`, how the cache's hits and the
store's answers for the misses are put back in the batch's order (:func:`pair_answers`), and
how a write's losses are marked (:func:`mark_lost`)."""

from __future__ import annotations

from collections.abc import Container, Iterable, MutableMapping, Sequence
from typing import NamedTuple

from worker.errors import StoreError
from worker.registry.descriptor import Descriptor

__all__ = ["FetchResult", "forget_sizes", "mark_lost", "pair_answers"]


class FetchResult(NamedTuple):
    """One digest of a batch fetch: its descriptor, or the store's error, and whether it hit."""

    digest: str
    descriptor: Descriptor | None
    error: StoreError | None
    hit: bool


def pair_answers(
    digests: Sequence[str],
    cached: list[Descriptor | None],
    resolved: list[Descriptor | StoreError],
) -> tuple[list[FetchResult], list[Descriptor]]:
    """The cache's hits and the store's answers for the misses, back in order as results; and
    what the store found, for the cache to be filled with."""
    answers = iter(resolved)
    results: list[FetchResult] = []
    fill: list[Descriptor] = []
    for d, desc in zip(digests, cached, strict=True):
        if desc is not None:
            results.append(FetchResult(d, desc, None, hit=True))
            continue
        found = next(answers)
        if isinstance(found, StoreError):
            results.append(FetchResult(d, None, found, hit=False))
        else:
            fill.append(found)
            results.append(FetchResult(d, found, None, hit=False))
    return results, fill


def mark_lost(
    results: list[FetchResult], digests: Container[str], error: StoreError
) -> list[FetchResult]:
    """``results``, those of ``digests`` made ``error``: not warm after all."""
    return [
        r._replace(descriptor=None, error=error, hit=False) if r.digest in digests else r
        for r in results
    ]


def forget_sizes(sizes: MutableMapping[str, int] | None, digests: Iterable[str]) -> None:
    """Drop ``digests`` from a run's memory of what it wrote (``sizes``): what was not written
    after all, or is gone, must be written again by the next batch that meets it."""
    if sizes is not None:
        for d in digests:
            sizes.pop(d, None)
