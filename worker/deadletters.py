"""Giving up on events, visibly: the dead-letter list, and replaying it.

A dead letter holds the event as it was last known (the registry's raw event for one the
receiver refused, the task message ``[id, kind, repository, digest]`` for one a task gave up on)
and the reason. ``warmer deadletter replay`` sends them back through the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from worker.errors import InvalidReferenceError
from worker.events import Event, Rejected, classify
from worker.pipeline import BatchResult
from worker.state import StateStore

__all__ = ["ReplayResult", "parse_messages", "replay", "settle"]

Message = list[Any]


def parse_messages(messages: Iterable[Any]) -> tuple[list[Event], list[tuple[str, Any]]]:
    """Task arguments back to events; a malformed message becomes ``(reason, message)``."""
    events: list[Event] = []
    bad: list[tuple[str, Any]] = []
    for message in messages:
        try:
            events.append(Event.from_message(message))
        except (InvalidReferenceError, ValueError, TypeError) as exc:
            bad.append((f"malformed task message: {exc}", message))
    return events, bad


def settle(
    state: StateStore,
    result: BatchResult,
    bad: list[tuple[str, Any]],
    *,
    attempt: int,
    max_retries: int,
) -> list[Message]:
    """Dead-letter what will never work; return the messages to try again (none after the last
    try: those are dead-lettered too, with the last reason)."""
    letters = [*bad, *((reason, e.as_message()) for e, reason in result.dead)]
    retry: list[Message] = []
    if attempt >= max_retries:
        letters += [
            (f"gave up after {attempt + 1} tries: {reason}", e.as_message())
            for e, reason in result.retry
        ]
    else:
        retry = [e.as_message() for e, _ in result.retry]
    state.dead_letter(letters)
    return retry


@dataclass(slots=True)
class ReplayResult:
    """What a replay did."""

    replayed: int = 0
    refused: int = 0


def replay(
    state: StateStore, enqueue: Callable[[list[Message]], None], limit: int = 1000
) -> ReplayResult:
    """Send up to ``limit`` dead letters back through the pipeline, oldest first.

    Letters whose events are still invalid go back on the list with the new reason.
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
            enqueue(messages)
    except Exception:
        # Not sent: put every letter back as it was, so nothing is lost.
        state.dead_letter((letter.reason, letter.event) for letter in letters)
        raise
    state.dead_letter(refused)
    return ReplayResult(replayed=len(messages), refused=len(refused))
