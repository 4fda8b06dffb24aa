"""Giving up visibly: settle a batch's failures, replay the dead-letter list."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.notifications import event
from worker.deadletters import parse_messages, replay, settle
from worker.events import Event, Kind
from worker.pipeline import BatchResult
from worker.state import StateStore

D = "sha256:" + "d" * 64
E1 = Event("e1", Kind.WARM_BLOB, "team/app", D)
E2 = Event("e2", Kind.WARM_MANIFEST, "team/app", D)


def test_malformed_messages_are_set_apart_with_a_reason() -> None:
    events, bad = parse_messages([E1.as_message(), ["e3", "warm-blob", "../x", D], "junk"])
    assert events == [E1]
    assert [m for _, m in bad] == [["e3", "warm-blob", "../x", D], "junk"]
    assert all(reason.startswith("malformed task message") for reason, _ in bad)


def test_settle_dead_letters_dead_events_and_returns_the_rest_to_retry(state: StateStore) -> None:
    result = BatchResult(retry=[(E1, "cache Redis: down")], dead=[(E2, "bad manifest")])
    retry = settle(state, result, [("malformed", "junk")], attempt=0, max_retries=3)
    assert retry == [E1.as_message()]
    assert [(d.reason, d.event) for d in state.dead_letters()] == [
        ("malformed", "junk"),
        ("bad manifest", E2.as_message()),
    ]


def test_after_the_last_try_retries_are_dead_lettered_too(state: StateStore) -> None:
    result = BatchResult(retry=[(E1, "cache Redis: down")])
    assert settle(state, result, [], attempt=3, max_retries=3) == []
    (letter,) = state.dead_letters()
    assert letter.reason == "gave up after 4 tries: cache Redis: down"
    assert letter.event == E1.as_message()


def test_replay_sends_valid_letters_and_keeps_invalid_ones(state: StateStore) -> None:
    raw_ok = event("push", "team/app", D, event_id="raw-ok")
    raw_bad = event("push", "Bad Name", D, event_id="raw-bad")
    state.dead_letter([("cache down", E1.as_message()), ("was bad", raw_bad), ("x", raw_ok)])
    sent: list[list[Any]] = []
    outcome = replay(state, sent.extend)
    assert (outcome.replayed, outcome.refused) == (2, 1)
    assert sent == [E1.as_message(), ["raw-ok", "warm-blob", "team/app", D]]
    (kept,) = state.dead_letters()
    assert kept.event == raw_bad
    assert "invalid repository name" in kept.reason


def test_a_replay_that_cannot_enqueue_loses_nothing(state: StateStore) -> None:
    state.dead_letter([("cache down", E1.as_message())])

    def broken(_: list[Any]) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        replay(state, broken)
    assert [d.event for d in state.dead_letters()] == [E1.as_message()]
