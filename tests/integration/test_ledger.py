"""The pending ledger: settle a batch, send overdue events again, give up visibly, replay."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.notifications import event
from worker.registry.events import Event, Kind
from worker.state import StateStore
from worker.state.figures import Figures, read
from worker.state.ledger import MAX_DELIVERIES, parse_messages, redeliver, replay, settle

D = "sha256:" + "d" * 64
E1 = Event("e1", Kind.WARM_BLOB, "team/app", D)
E2 = Event("e2", Kind.WARM_MANIFEST, "team/app", D)
E3 = Event("e3", Kind.EVICT, "team/app", D)


def test_malformed_messages_are_set_apart_with_a_reason() -> None:
    events, bad = parse_messages([E1.as_message(), ["e3", "warm-blob", "../x", D], "junk"])
    assert events == [E1]
    assert [m for _, m in bad] == [["e3", "warm-blob", "../x", D], "junk"]
    assert all(reason.startswith("malformed task message") for reason, _ in bad)


def test_settle_untracks_done_dead_letters_dead_and_reschedules_failed(
    state: StateStore,
) -> None:
    now = time.time()
    state.track([E1.as_message(), E2.as_message(), E3.as_message()], now)
    settled = settle(
        state,
        [E1, E2, E3],
        retry=[(E1, "cache Redis: down")],
        dead=[(E2, "bad manifest")],
        bad=[("malformed", "junk")],
        now=now,
    )
    assert settled == (1, 2)
    assert state.pending_count() == 1
    assert state.due(now + 3600, 10) == [E1.as_message()]  # due again, later
    assert state.due(now, 10) == []
    assert [(d.reason, d.event) for d in state.dead_letters()] == [
        ("malformed", "junk"),
        ("bad manifest", E2.as_message()),
    ]


def test_an_event_that_keeps_failing_is_dead_lettered_at_the_cap(state: StateStore) -> None:
    now = time.time()
    retry = [(E1, "cache Redis: down")]
    for _ in range(MAX_DELIVERIES - 1):
        assert settle(state, [E1], retry=retry, dead=[], bad=[], now=now).again == 1
    assert settle(state, [E1], retry=retry, dead=[], bad=[], now=now) == (0, 1)
    (letter,) = state.dead_letters()
    assert letter.reason == f"gave up after {MAX_DELIVERIES} deliveries: cache Redis: down"
    assert state.pending_count() == 0


def test_redeliver_sends_what_is_overdue_and_not_again_at_once(state: StateStore) -> None:
    now = time.time()
    state.track([E1.as_message()], now - 1)
    state.track([E2.as_message()], now + 3600)
    sent: list[list[Any]] = []
    assert redeliver(state, sent.extend, now=now, first_wait=10) == (1, 0)
    assert sent == [E1.as_message()]
    assert redeliver(state, sent.extend, now=now + 1, first_wait=10) == (0, 0)
    assert state.pending_count() == 2  # still pending until a task settles them


def test_an_event_never_done_is_dead_lettered_after_the_cap(state: StateStore) -> None:
    state.track([E1.as_message()], 0)
    sent: list[list[Any]] = []
    for i in range(MAX_DELIVERIES):
        redeliver(state, sent.extend, now=1e9 * (i + 1), first_wait=10)  # long after each due
    assert len(sent) == MAX_DELIVERIES - 1
    (letter,) = state.dead_letters()
    assert "is a worker running?" in letter.reason
    assert state.pending_count() == 0


def test_a_redelivery_that_cannot_publish_keeps_the_event_pending(state: StateStore) -> None:
    state.track([E1.as_message()], 0)

    def broken(_: list[Any]) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        redeliver(state, broken, now=time.time(), first_wait=10)
    assert state.pending_count() == 1


def test_replay_sends_and_tracks_valid_letters_and_keeps_invalid_ones(state: StateStore) -> None:
    raw_ok = event("push", "team/app", D, event_id="raw-ok")
    raw_bad = event("push", "Bad Name", D, event_id="raw-bad")
    state.dead_letter([("cache down", E1.as_message()), ("was bad", raw_bad), ("x", raw_ok)])
    sent: list[list[Any]] = []
    outcome = replay(state, sent.extend, now=time.time(), first_wait=10)
    assert (outcome.replayed, outcome.refused) == (2, 1)
    assert sent == [E1.as_message(), ["raw-ok", "warm-blob", "team/app", D]]
    assert state.pending_count() == 2
    (kept,) = state.dead_letters()
    assert kept.event == raw_bad
    assert "invalid repository name" in kept.reason


def test_a_replay_that_cannot_enqueue_loses_nothing(state: StateStore) -> None:
    state.dead_letter([("cache down", E1.as_message())])

    def broken(_: list[Any]) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        replay(state, broken, now=time.time(), first_wait=10)
    assert [d.event for d in state.dead_letters()] == [E1.as_message()]


def test_the_figures_are_recorded_as_the_batch_is_released(state: StateStore) -> None:
    now = time.time()
    state.track([E1.as_message(), E3.as_message()], now)
    totals = Figures(warmed=1, evicted=1)
    totals.fetch.miss()
    settle(
        state,
        [E1, E3],
        retry=[],
        dead=[(E3, "gone")],
        bad=[],
        now=now,
        figures=(totals, {"team/app": Figures(warmed=1, evicted=1)}),
    )
    assert state.pending_count() == 0
    recorded = read(state)
    assert (recorded.warmed, recorded.evicted, recorded.dead_lettered) == (1, 1, 1)
    assert (recorded.fetch.requests, recorded.fetch.misses) == (1, 1)
    assert read(state, "team/app").warmed == 1


def test_during_a_backlog_an_overdue_event_is_sent_once_then_only_postponed(
    state: StateStore,
) -> None:
    state.track([E1.as_message()], 0)
    sent: list[list[Any]] = []
    for i in range(10 * MAX_DELIVERIES):  # far past the cap, the queue never empty
        redeliver(state, sent.extend, now=1e9 * (i + 1), first_wait=10, queued=5)
    assert sent == [E1.as_message()]  # one re-send in all: at most one duplicate
    assert state.dead_letter_count() == 0
    assert state.pending_count() == 1
    # The backlog gone and the event still not done: it was lost; sent again as before.
    assert redeliver(state, sent.extend, now=1e12, first_wait=10, queued=0) == (1, 0)


def test_during_a_backlog_an_event_whose_try_failed_is_still_retried(state: StateStore) -> None:
    # A task took the event and failed (Redis away): no message of it waits anywhere, so a
    # queue that never empties must not keep it from its retry.
    state.track([E1.as_message()], 0)
    sent: list[list[Any]] = []
    redeliver(state, sent.extend, now=1000.0, first_wait=10, queued=5)  # the one backlog re-send
    settle(state, [E1], retry=[(E1, "cache Redis: down")], dead=[], bad=[], now=2000.0)
    for i in range(1, 100):
        redeliver(state, sent.extend, now=2000.0 + 60 * i, first_wait=10, queued=50)
    assert sent.count(E1.as_message()) == 2  # the backlog re-send, then the retry after failing
    assert state.dead_letter_count() == 0


def test_every_dead_letter_is_counted_once_in_dead_lettered(state: StateStore) -> None:
    # The alert on dead letters watches this figure, wherever a letter comes from.
    state.track([E1.as_message()], 0)
    for i in range(MAX_DELIVERIES):
        redeliver(state, lambda _: None, now=1e9 * (i + 1), first_wait=10)
    assert read(state).dead_lettered == 1  # not done after the cap
    state.dead_letter([("was bad", event("push", "Bad Name", D, event_id="raw-bad"))])
    assert read(state).dead_lettered == 2
    replay(state, lambda _: None, now=time.time(), first_wait=10)  # refused again: a new letter
    assert read(state).dead_lettered == 3

    def broken(_: list[Any]) -> None:
        raise ConnectionError("broker down")

    state.purge_dead_letters()
    state.dead_letter([("cache down", E2.as_message())])
    with pytest.raises(ConnectionError):
        replay(state, broken, now=time.time(), first_wait=10)
    assert state.dead_letter_count() == 1
    assert read(state).dead_lettered == 4  # put back as it was: not counted again
