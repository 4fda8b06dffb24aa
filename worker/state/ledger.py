"""The pending ledger: every accepted event is tracked until a task is done with it.

A broker can lose a message (kombu's Redis transport pops a message before it records it as
unacknowledged, so a worker killed in between loses it), and a task can fail for a while (Redis
away). Both end the same way here: the event stays in the ledger (the state Redis) and is sent
again when it is due, with exponential backoff, until a task settles it; after
:data:`MAX_DELIVERIES` it goes to the dead-letter list, which a person can read and replay.

- the receiver tracks events *before* publishing them: a 202 means tracked and with the broker;
- a task settles its batch: done and dead events leave the ledger, failed ones are due again
  later (no broker countdowns: a delayed message on a Redis broker outlives its visibility
  timeout and is handed out twice);
- :func:`redeliver` (a beat task) publishes the events whose time has come.

Every write is idempotent, so a second delivery costs a little work and changes nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from worker.registry.events import Event, Message, Rejected, classify
from worker.state.figures import Figures
from worker.state.store import StateStore

__all__ = [
    "MAX_DELIVERIES",
    "REPLAY_TASK_SIZE",
    "ReplayResult",
    "Settled",
    "backoff",
    "parse_messages",
    "redeliver",
    "replay",
    "settle",
]

#: Sends and failed tries of one event before it is dead-lettered. A failed try counts twice
#: (it is rescheduled, then sent again), so this allows about 8 tries, some 20 minutes.
MAX_DELIVERIES: Final = 16
#: Letters per task of a replay.
REPLAY_TASK_SIZE: Final = 20
#: First retry after a failed try, doubling up to the cap (seconds).
RETRY_BASE: Final = 2.0
RETRY_CAP: Final = 300.0


def backoff(count: int, base: float, cap: float = RETRY_CAP) -> float:
    """Seconds to wait before delivery ``count`` + 1: doubling from ``base``, with jitter."""
    wait: float = min(cap, base * 2 ** max(count - 1, 0))
    return wait * random.uniform(0.75, 1.0)


def parse_messages(messages: Iterable[Any]) -> tuple[list[Event], list[tuple[str, Any]]]:
    """Task arguments back to events; a malformed message becomes ``(reason, message)``."""
    events: list[Event] = []
    bad: list[tuple[str, Any]] = []
    for message in messages:
        try:
            events.append(Event.from_message(message))
        except Exception as exc:  # a message is input too: whatever it raises, it alone fails
            bad.append((f"malformed task message: {exc!r}"[:300], message))
    return events, bad


def settle(
    state: StateStore,
    events: list[Event],
    *,
    retry: list[tuple[Event, str]],
    dead: list[tuple[Event, str]],
    bad: list[tuple[str, Any]],
    now: float,
    figures: tuple[Figures, Mapping[str, Figures]] | None = None,
) -> Settled:
    """Record what a task did with its batch in the ledger; say how many are due again and how
    many were dead-lettered.

    ``retry`` (worth another try, with the reason) are due again after a backoff, or
    dead-lettered once they had :data:`MAX_DELIVERIES`; ``dead`` (never going to work) and
    ``bad`` (malformed messages) are dead-lettered; the rest of ``events`` are done.
    ``figures`` (the task's, in all and per repository) are recorded in the transaction that
    lets go of the done events: they are there by the time a reader sees an empty ledger, and a
    task that fails to settle records none. Dead letters count themselves as they are added.
    """
    failed = [e.as_message() for e, _ in retry]
    counts = state.reschedule(failed, lambda n: now + backoff(n, RETRY_BASE))
    letters = [*bad, *((reason, e.as_message()) for e, reason in dead)]
    again: set[tuple[Any, ...]] = set()
    for message, (_, reason), n in zip(failed, retry, counts, strict=True):
        if n >= MAX_DELIVERIES:
            letters.append((f"gave up after {n} deliveries: {reason}", message))
        else:
            again.add(tuple(message))
    state.dead_letter(letters)
    settled = Settled(again=len(again), dead_lettered=len(letters))
    flat = None
    if figures is not None:
        totals, by_repository = figures
        flat = (totals.flat(), {repo: f.flat() for repo, f in by_repository.items()})
    batch = [e.as_message() for e in events]
    done = [m for m in batch if tuple(m) not in again] if again else batch
    state.untrack(done + [m for _, m in bad], flat)
    return settled


def redeliver(
    state: StateStore,
    enqueue: Callable[[list[Message]], None],
    *,
    now: float,
    first_wait: float,
    queued: int = 0,
    limit: int = 1000,
) -> tuple[int, int]:
    """Publish the pending events whose time has come; return (sent, dead-lettered).

    ``queued`` is how many messages wait in the broker's queue now. Overdue means one of two
    things, and the queue tells them apart:

    - a backlog (``queued`` > 0: workers stopped, or behind): the event's message is most
      likely still in the queue, behind the others. It is sent again once (it may also have
      been lost, by a worker killed while taking it: it is not left waiting for the whole
      backlog), then, while that message waits, only postponed, never dead-lettered: a backlog
      is not a loss, and re-sends add at most one duplicate per event. An event whose try
      failed since (``settle`` rescheduled it: no message of it is anywhere) is sent again
      when due, backlog or not;
    - no backlog (the queue is empty): nothing holds the message any more, so it was lost or its
      tries failed. It is sent again after a growing wait from ``first_wait``; after
      :data:`MAX_DELIVERIES` it is dead-lettered.
    """
    due = state.due(now, limit)
    if queued > 0:
        waiting = state.waiting(due)
        again = [m for m, w in zip(due, waiting, strict=True) if w]
        send = [m for m, w in zip(due, waiting, strict=True) if not w]
        state.postpone(again, now + first_wait)
        state.reschedule(send, lambda _: now + first_wait)
        if send:
            enqueue(send)
            state.mark_waiting(send)
        return len(send), 0
    counts = state.reschedule(
        due, lambda n: now + backoff(n, first_wait, cap=max(first_wait, RETRY_CAP))
    )
    exhausted = [m for m, n in zip(due, counts, strict=True) if n >= MAX_DELIVERIES]
    send = [m for m, n in zip(due, counts, strict=True) if n < MAX_DELIVERIES]
    if exhausted:
        state.dead_letter(
            (f"not done after {MAX_DELIVERIES} deliveries (is a worker running?)", m)
            for m in exhausted
        )
        state.untrack(exhausted)
    if send:
        enqueue(send)
    return len(send), len(exhausted)


class Settled(NamedTuple):
    """What :func:`settle` did: events due again, events dead-lettered."""

    again: int
    dead_lettered: int


@dataclass(slots=True)
class ReplayResult:
    """What a replay did."""

    replayed: int = 0
    refused: int = 0


def replay(
    state: StateStore,
    enqueue: Callable[[list[Message]], None],
    limit: int = 1000,
    *,
    now: float,
    first_wait: float,
) -> ReplayResult:
    """Send up to ``limit`` dead letters back through the pipeline, oldest first.

    Replayed events are tracked again like new ones; letters whose events are still invalid go
    back on the list with the new reason.
    """
    letters = state.pop_dead_letters(limit)
    messages: list[Message] = []
    refused: list[tuple[str, Any]] = []
    for letter in letters:
        event = letter.event
        if isinstance(event, list):
            parsed, bad = parse_messages([event])
            messages += [e.as_message() for e in parsed]
            refused += bad
            continue
        classified = classify(event)
        if isinstance(classified, Rejected):
            refused.append((classified.reason, event))
        else:
            messages.append(classified.as_message())
    try:
        if messages:
            state.untrack(messages)  # a fresh start: no deliveries counted
            state.track(messages, now + first_wait)
            # Small tasks: a letter that fails again fails alone, in a task of a few.
            for start in range(0, len(messages), REPLAY_TASK_SIZE):
                enqueue(messages[start : start + REPLAY_TASK_SIZE])
    except Exception:
        # Not sent: put every letter back as it was, so nothing is lost.
        state.dead_letter(((letter.reason, letter.event) for letter in letters), count=False)
        raise
    state.dead_letter(refused)
    return ReplayResult(replayed=len(messages), refused=len(refused))
