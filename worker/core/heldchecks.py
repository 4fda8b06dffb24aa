"""What a writer that holds its re-checks back keeps (:meth:`CacheWriter.holding
<worker.core.writes.CacheWriter.holding>`): each write made and not yet re-checked, what the
re-checks found, and what a store must offer to re-check many writes from one listing."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from worker.errors import StoreError
from worker.registry.descriptor import Descriptor

__all__ = ["Held", "Rechecked", "RechecksTogether"]


class RechecksTogether(Protocol):
    """A store that re-checks several writes from one listing (S3: ``S3Store``)."""

    def recheck_scope(self, repository: str) -> str | None: ...

    def fetch_rechecked(
        self,
        checks: Sequence[tuple[str, Sequence[str], bool, str | None]],
        *,
        seen: MutableMapping[str, int],
    ) -> list[list[Descriptor | StoreError]]: ...


@dataclass
class Held:
    """A write made, its re-check held back: what to re-check, where, and its journal notes."""

    repository: str
    digests: list[str]
    manifests: bool
    scope: str | None
    notes: list[str]


@dataclass
class Rechecked:
    """What held re-checks found, by repository: digests gone (forgotten), and the digests of
    writes the store did not answer about (undone; their notes stay for the sweep)."""

    gone: list[tuple[str, set[str]]] = field(default_factory=list)
    failed: list[tuple[str, list[str], StoreError]] = field(default_factory=list)
