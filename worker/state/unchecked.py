"""The journal of cache writes not yet re-checked against the store: what a writer that died
between its write and its re-check left behind, for a sweep to check.

A writer notes a batch (repository, digests) before it writes the cache and removes the note
once its re-check is done; a note older than a write and its check can take belongs to a
writer that died (SIGKILL, out of memory, a lost machine) and is swept: re-checked and removed.
The journal is bounded: at most :data:`MAX_NOTES` notes (the oldest are dropped, and logged:
such an entry is left to reconcile), and the key expires a day after its last note.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

import redis

from worker.state.redisio import state_call, text

__all__ = ["MAX_NOTES", "Note", "UncheckedWrites"]

_log = logging.getLogger(__name__)

#: Notes kept at most: far more than writers run at once (a note of a batch of 1,000 digests
#: is about 73 KB: 73 MB at most).
MAX_NOTES: Final = 1_000
#: The key outlives its last note by this much: idle, it goes (a busy journal stays capped).
_TTL_SECONDS: Final = 86_400

#: A note: the repository ("" for global descriptors only), manifests?, the digests.
Note = tuple[str, bool, list[str]]


class UncheckedWrites:
    """Notes of cache writes begun and not yet re-checked, in the state Redis."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._redis = client
        self._key = key

    def open(self, repository: str | None, digests: Sequence[str], *, manifests: bool) -> str:
        """Note a write about to begin; return the note, for :meth:`close`."""
        return self.open_many({repository or "": digests}, manifests=manifests)

    def open_many(self, groups: Mapping[str, Sequence[str]], *, manifests: bool) -> str:
        """:meth:`open` for one write of several repositories ("": global descriptors): one
        note, in one round trip, swept whole (a batch of a thousand small repositories must
        not fill the journal's cap on its own)."""
        # A note of its own (the id): two writers of the same batch must not share one. A note
        # of one repository keeps the shape earlier releases read (their sweep, in a rolling
        # upgrade, reads the notes of new writers too); several take the new one.
        id_ = uuid.uuid4().hex
        if len(groups) == 1:
            [(repository, digests)] = groups.items()
            shape: list[Any] = [repository, manifests, list(digests), id_]
        else:
            shape = [[[r, list(d)] for r, d in groups.items()], manifests, id_]
        note = json.dumps(shape, separators=(",", ":"))
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(self._key, {note: time.time()})
        pipe.zremrangebyrank(self._key, 0, -MAX_NOTES - 1)
        pipe.expire(self._key, _TTL_SECONDS)
        dropped = state_call(pipe.execute)[1]
        if dropped:
            _log.warning(
                "%d unchecked writes dropped from the journal (over %d)", dropped, MAX_NOTES
            )
        return note

    def close(self, *notes: str) -> None:
        """The writes' re-checks are done: forget their notes."""
        if notes:
            state_call(self._redis.zrem, self._key, *notes)

    def postpone(self, note: str) -> None:
        """Its re-check failed: the note goes behind the others (noted as begun now), so the
        sweep's next look takes the others first; it is swept again once it is old again."""
        state_call(lambda: self._redis.zadd(self._key, {note: time.time()}, xx=True))

    def older_than(self, seconds: float, limit: int = 100) -> list[tuple[str, Note]]:
        """Notes of writes begun over ``seconds`` ago (their writer died), oldest first; a
        note of several repositories comes as one entry each, its text repeated."""
        raw = state_call(
            self._redis.zrangebyscore, self._key, "-inf", time.time() - seconds, 0, limit
        )
        notes: list[tuple[str, Note]] = []
        for item in raw:
            note = text(item)
            groups, manifests, *rest = json.loads(note)
            if isinstance(groups, str):  # [repository, manifests, digests, id]: earlier releases'
                groups = [[groups, rest[0]]]
            for repository, digests in groups:
                notes.append((note, (repository, bool(manifests), [str(d) for d in digests])))
        return notes
