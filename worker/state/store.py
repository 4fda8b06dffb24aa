"""The warmer's own state, in its own Redis (``WARMER_STATE_URL``): the one module that spells
its keys. The registry's cache DB never holds any of these.

    warmer:seen:<event id>   STRING  an event already handed to the broker (expires after
                                     WARMER_DEDUP_TTL)
    warmer:pending           ZSET    task message (JSON) -> when to send it again if not done
    warmer:pending:since     ZSET    the same messages -> when they were accepted (the oldest's age)
    warmer:deliveries        HASH    task message (JSON) -> times it was sent or tried
    warmer:waiting           SET     task messages sent again during a backlog: their message
                                     waits in the queue (until a task takes or fails them)
    warmer:deadletter        LIST    JSON {"at", "reason", "event"}: given up on, oldest first,
                                     at most WARMER_DEADLETTER_MAX
    warmer:deadletter:dropped STRING how many dead letters the cap dropped
    warmer:access            ZSET    repository -> time of its last pull (hot-first re-warm; the
                                     newest 100,000: :mod:`pulls`)
    warmer:pulls             HASH    repository -> pulls counted (the receiver adds them up), of
                                     the repositories in warmer:access
    warmer:pulls:total       STRING  pulls counted, of every repository (the audit's budget)
    warmer:counters          HASH    cluster-wide figures: exists.requests ... fetch.misses, warmed,
                                     evicted, dead_lettered (the key keeps its 0.1 name, so an
                                     upgrade keeps the figures)
    warmer:counters:repository:<repo>  HASH  the same, for one repository
    warmer:snapshots         LIST    JSON snapshots of the figures, newest first (the last 1,440)
    warmer:last:<job>        STRING  JSON summary of the last rewarm or reconcile
    warmer:lock:<name>       STRING  a holder's token (expires unless the holder refreshes it)
    warmer:cache:keys        STRING  keys the cache held at the last check (to see it emptied)
    warmer:unchecked         ZSET    JSON [[[repository, digests], ...], manifests, id] -> when
                                     a write of them began: removed once re-checked
                                     (:mod:`unchecked`)
    warmer:audit             HASH    the audit's grant of store requests and its totals
                                     (:mod:`auditbudget`)
    warmer:heal              HASH    heal re-warms started and not confirmed, and when the next
                                     may start (:mod:`healrewarms`; expires a day after the last)
    warmer:slo               HASH    push-to-warm buckets, clock skew, images checked by verdict
                                     (:mod:`slo`; fixed fields, expires 30 days after the last)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, TypeAlias

import redis

from worker.config.defaults import DEADLETTER_MAX, DEDUP_TTL
from worker.state.auditbudget import AuditBudget
from worker.state.deadletters import DeadLetter, DeadLetterList
from worker.state.healrewarms import HealRewarms
from worker.state.pulls import MAX_HOT, PullRecords
from worker.state.redisio import state_call, text
from worker.state.scripts import (
    ADMIT_LUA,
    OLDEST_LUA,
    REFRESH_LUA,
    RELEASE_LUA,
    SEEN_LUA,
    UNTRACK_LUA,
)
from worker.state.slo import SloFigures
from worker.state.unchecked import UncheckedWrites

__all__ = ["DeadLetter", "FlatFigures", "StateStore"]

#: A task's figures, flat (``fetch.hits``...): in all, and per repository.
FlatFigures: TypeAlias = tuple[Mapping[str, int], Mapping[str, Mapping[str, int]]]

_SEEN_PREFIX: Final = "warmer:seen:"
_DEADLETTER: Final = "warmer:deadletter"
_ACCESS: Final = "warmer:access"
_FIGURES: Final = "warmer:counters"
_REPOSITORY_FIGURES: Final = "warmer:counters:repository:"
_SNAPSHOTS: Final = "warmer:snapshots"
_LAST: Final = "warmer:last:"
_DROPPED: Final = "warmer:deadletter:dropped"
_PULLS: Final = "warmer:pulls"
_PULLS_TOTAL: Final = "warmer:pulls:total"
_AUDIT: Final = "warmer:audit"
_PENDING: Final = "warmer:pending"
_SINCE: Final = "warmer:pending:since"
_SLO: Final = "warmer:slo"
_LOCK: Final = "warmer:lock:"
_CACHE_KEYS: Final = "warmer:cache:keys"
_HEAL: Final = "warmer:heal"
#: Cache writes begun and not yet re-checked against the store (see worker.state.unchecked).
UNCHECKED_KEY: Final = "warmer:unchecked"
_DELIVERIES: Final = "warmer:deliveries"
_WAITING: Final = "warmer:waiting"


# Built once: json.dumps with options builds an encoder on every call (a tenth of a member's cost).
_MEMBER_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


def _member(message: Any) -> str:
    # The same message always gives the same member: compact, key order fixed.
    return _MEMBER_ENCODER.encode(message)


class StateStore:
    """Dedup keys, the dead-letter list and access records in the warmer's own Redis."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        seen_ttl: int = DEDUP_TTL,
        deadletter_max: int = DEADLETTER_MAX,
    ) -> None:
        self._redis = client
        self._untrack = client.register_script(UNTRACK_LUA)
        self._admit = client.register_script(ADMIT_LUA)
        self._seen = client.register_script(SEEN_LUA)
        self._oldest = client.register_script(OLDEST_LUA)
        self._seen_ttl = seen_ttl
        self._letters = DeadLetterList(
            client, _DEADLETTER, _DROPPED, deadletter_max, (_FIGURES, "dead_lettered")
        )
        self._pulls = PullRecords(client, access=_ACCESS, pulls=_PULLS, total=_PULLS_TOTAL)

    def __repr__(self) -> str:
        return f"StateStore({self._redis!r})"

    # -- dedup ----------------------------------------------------------------------------------

    def unseen(self, event_ids: Sequence[str]) -> list[str]:
        """The ids not yet marked seen, in order (one round trip)."""
        if not event_ids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for event_id in event_ids:
            pipe.exists(_SEEN_PREFIX + event_id)
        flags = state_call(pipe.execute)
        return [e for e, seen in zip(event_ids, flags, strict=True) if not seen]

    def mark_seen(self, event_ids: Iterable[str]) -> None:
        """Remember ids as handed to the broker (one command); call only after the broker
        took them, or, for events that need no task, once they are accepted."""
        keys = [_SEEN_PREFIX + e for e in event_ids]
        if keys:
            state_call(self._seen, keys, [self._seen_ttl])

    # -- the pending ledger: every accepted event until a task is done with it ---------------

    def admit(self, event_ids: Sequence[str], messages: Sequence[Any], due: float) -> list[bool]:
        """For each event (its id and its task message), whether it is fresh: not seen, and
        not earlier in ``event_ids``. The fresh ones are tracked as pending until ``due``, in
        one round trip; :meth:`mark_seen` them once the broker has them."""
        if not event_ids:
            return []
        keys = [_PENDING, _SINCE, *(_SEEN_PREFIX + e for e in event_ids)]
        members = [_member(m) for m in messages]
        if len(members) != len(event_ids):
            raise ValueError("one message an event id")
        fresh = state_call(self._admit, keys, [due, time.time(), *members])
        flags = [False] * len(event_ids)
        for position in fresh:
            flags[int(position) - 1] = True
        return flags

    def track(self, messages: Sequence[Any], due: float) -> None:
        """Record messages as pending, to be sent again at ``due`` unless a task settles them."""
        if messages:
            members = [_member(m) for m in messages]
            pipe = self._redis.pipeline(transaction=True)
            pipe.zadd(_PENDING, dict.fromkeys(members, due))
            pipe.zadd(_SINCE, dict.fromkeys(members, time.time()), nx=True)  # an older stays
            state_call(pipe.execute)

    def reschedule(self, messages: Sequence[Any], due: Callable[[int], float]) -> list[int]:
        """Count one more delivery of each message and make it due again at ``due(count)``;
        return the counts."""
        if not messages:
            return []
        members = [_member(m) for m in messages]
        pipe = self._redis.pipeline(transaction=False)
        for member in members:
            pipe.hincrby(_DELIVERIES, member, 1)
        pipe.srem(_WAITING, *members)  # tried (or sent again now): no longer merely queued
        counts = [int(n) for n in state_call(pipe.execute)[: len(members)]]
        # Both or neither: a since entry without its ledger entry is the oldest for ever.
        pipe = self._redis.pipeline(transaction=True)
        pipe.zadd(_PENDING, {m: due(n) for m, n in zip(members, counts, strict=True)})
        pipe.zadd(_SINCE, dict.fromkeys(members, time.time()), nx=True)
        state_call(pipe.execute)
        return counts

    def deliveries(self, messages: Sequence[Any]) -> list[int]:
        """How many times each message was sent again or tried (0 for never)."""
        if not messages:
            return []
        raw = state_call(self._redis.hmget, _DELIVERIES, [_member(m) for m in messages])
        return [int(n) if n is not None else 0 for n in raw]

    def mark_waiting(self, messages: Sequence[Any]) -> None:
        """These messages were just sent again during a backlog: they wait in the queue."""
        if messages:
            state_call(self._redis.sadd, _WAITING, *(_member(m) for m in messages))

    def waiting(self, messages: Sequence[Any]) -> list[bool]:
        """Whether each message waits in the queue since a backlog re-send (no task took it)."""
        if not messages:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for m in messages:
            pipe.sismember(_WAITING, _member(m))
        return [bool(flag) for flag in state_call(pipe.execute)]

    def postpone(self, messages: Sequence[Any], due: float) -> None:
        """Make messages due again at ``due`` without counting a delivery."""
        if messages:
            state_call(self._redis.zadd, _PENDING, {_member(m): due for m in messages}, False, True)

    def untrack(self, messages: Sequence[Any], figures: FlatFigures | None = None) -> None:
        """A task is done with these messages (warmed, evicted or dead-lettered).

        ``figures``, the task's (flat, in all and per repository), are added in the same
        script: one command, and whoever sees the messages gone sees the figures.
        """
        members = [_member(m) for m in messages]
        keys = [_PENDING, _DELIVERIES, _WAITING, _SINCE]
        args: list[str | int] = [len(members), *members]
        if figures is not None:
            totals, by_repository = figures
            for key, values in [(_FIGURES, totals)] + [
                (_REPOSITORY_FIGURES + repo, f) for repo, f in by_repository.items()
            ]:
                added = [(field, value) for field, value in values.items() if value]
                if added:
                    keys.append(key)
                    args += [len(added), *(x for pair in added for x in pair)]
        if len(keys) > 4 or members:
            state_call(self._untrack, keys, args)

    def due(self, now: float, limit: int) -> list[Any]:
        """Pending messages whose time has come, oldest first."""
        raw = state_call(self._redis.zrangebyscore, _PENDING, "-inf", now, 0, limit)
        return [json.loads(m) for m in raw]

    def pending_count(self) -> int:
        """How many accepted events no task is done with yet."""
        count: int = state_call(self._redis.zcard, _PENDING)
        return count

    def oldest_pending(self) -> float | None:
        """When the oldest event in the ledger was accepted (None: none); heals (OLDEST_LUA)."""
        oldest = state_call(self._oldest, [_SINCE, _PENDING], [100])
        return float(oldest) if oldest is not None else None

    # -- figures -------------------------------------------------------------------------------

    def add_figures(
        self, totals: Mapping[str, int], by_repository: Mapping[str, Mapping[str, int]]
    ) -> None:
        """Add a task's figures (flat) to the cluster-wide ones: one atomic round trip."""
        self.untrack([], (totals, by_repository))

    def figures(self, repository: str | None = None) -> dict[str, int]:
        """The cluster-wide figures, flat (of one repository, when given)."""
        key = _FIGURES if repository is None else _REPOSITORY_FIGURES + repository
        raw = state_call(self._redis.hgetall, key)
        return {text(k): int(v) for k, v in raw.items()}

    def push_snapshot(self, snapshot: Mapping[str, Any], keep: int) -> None:
        """Keep a snapshot of the figures; only the newest ``keep`` stay."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.lpush(_SNAPSHOTS, json.dumps(snapshot, sort_keys=True))
        pipe.ltrim(_SNAPSHOTS, 0, keep - 1)
        state_call(pipe.execute)

    def snapshots(self, count: int) -> list[dict[str, Any]]:
        """The newest ``count`` snapshots, newest first."""
        raw = state_call(self._redis.lrange, _SNAPSHOTS, 0, count - 1)
        return [json.loads(item) for item in raw]

    def record_last(self, job: str, summary: Mapping[str, Any]) -> None:
        """Remember the summary of the last ``job`` (rewarm, reconcile)."""
        state_call(self._redis.set, _LAST + job, json.dumps(summary, sort_keys=True))

    def last(self, job: str) -> dict[str, Any] | None:
        """The summary of the last ``job``, if any ran."""
        raw = state_call(self._redis.get, _LAST + job)
        return json.loads(raw) if raw else None

    # -- dead letters (worker.state.deadletters keeps the list) -------------------------------

    def dead_letter(self, letters: Iterable[tuple[str, Any]], *, count: bool = True) -> int:
        """Dead-letter ``(reason, event)`` pairs, counted unless put back; return how many."""
        return self._letters.add(letters, count=count)

    def dead_letters_dropped(self) -> int:
        """How many dead letters the cap dropped, ever."""
        return self._letters.dropped()

    def dead_letters(self, start: int = 0, stop: int = -1) -> list[DeadLetter]:
        """Dead letters from ``start`` to ``stop`` (inclusive, as LRANGE), oldest first."""
        return self._letters.read(start, stop)

    def dead_letter_count(self) -> int:
        """How many dead letters wait."""
        return self._letters.count()

    def pop_dead_letters(self, count: int) -> list[DeadLetter]:
        """Take up to ``count`` of the oldest dead letters off the list (for a replay)."""
        return self._letters.pop(count)

    def purge_dead_letters(self) -> int:
        """Drop every dead letter; return how many there were."""
        return self._letters.purge()

    # -- access records -------------------------------------------------------------------------

    def record_access(self, repositories: Iterable[str]) -> None:
        """Note that these repositories were just pulled."""
        self._pulls.touch(repositories, time.time())

    def record_pulls(self, pulls: Mapping[str, int], at: float) -> None:
        """Add up pulls per repository (the receiver's sums), and note when."""
        self._pulls.add(pulls, at)

    def pulls_total(self) -> int:
        """Pulls counted, of every repository."""
        return self._pulls.total()

    def pulls(self, repository: str) -> int:
        """Pulls counted for ``repository``."""
        return self._pulls.count(repository)

    def recently_pulled(self, limit: int = MAX_HOT) -> list[str]:
        """Repositories pulled in the last hour, newest first (at most ``limit``)."""
        return self._pulls.recent(limit)

    # -- a lock across machines ----------------------------------------------------------------

    def acquire_lock(self, name: str, token: str, ttl: float) -> bool:
        """Take the lock ``name`` for ``ttl`` seconds unless someone holds it; say whether."""
        taken = state_call(self._redis.set, _LOCK + name, token, None, int(ttl * 1000), True)
        return bool(taken)

    def refresh_lock(self, name: str, token: str, ttl: float) -> bool:
        """Extend the lock by ``ttl`` seconds from now if ``token`` still holds it."""
        script = self._redis.register_script(REFRESH_LUA)
        return bool(state_call(script, [_LOCK + name], [token, int(ttl * 1000)]))

    def release_lock(self, name: str, token: str) -> bool:
        """Let go of the lock if ``token`` holds it."""
        script = self._redis.register_script(RELEASE_LUA)
        return bool(state_call(script, [_LOCK + name], [token]))

    def lock_holder(self, name: str) -> str | None:
        """The token holding lock ``name``, if any."""
        raw = state_call(self._redis.get, _LOCK + name)
        return text(raw) if raw is not None else None

    # -- the cache's size, as last seen ---------------------------------------------------------

    def cache_keys(self) -> int | None:
        """The cache's key count remembered by :meth:`set_cache_keys` (None: never yet)."""
        value = state_call(self._redis.get, _CACHE_KEYS)
        return int(value) if value is not None else None

    def set_cache_keys(self, count: int) -> None:
        """Remember ``count`` as the cache's key count, for the next look for a drop."""
        state_call(self._redis.set, _CACHE_KEYS, count)

    @property
    def unchecked(self) -> UncheckedWrites:
        """The journal of cache writes not yet re-checked against the store."""
        return UncheckedWrites(self._redis, UNCHECKED_KEY)

    @property
    def audit_budget(self) -> AuditBudget:
        """The continuous audit's grant of store requests, and its totals."""
        return AuditBudget(self._redis, _AUDIT)

    @property
    def slo(self) -> SloFigures:
        """Push-to-warm and images checked: the figures objectives are set on."""
        return SloFigures(self._redis, _SLO)

    @property
    def heal_rewarms(self) -> HealRewarms:
        """The cache watch's re-warms started and not confirmed (its backoff)."""
        return HealRewarms(self._redis, _HEAL)

    def ping(self) -> None:
        """Raise StateError unless the state Redis answers."""
        state_call(self._redis.ping)
