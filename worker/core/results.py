"""A batch lookup's answer for each digest: :class:`FetchResult`, and how the cache's hits and
the store's answers for the misses are put back in the batch's order (:func:`pair_answers`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from worker.errors import StoreError
from worker.registry.descriptor import Descriptor

__all__ = ["FetchResult", "pair_answers"]


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
