"""The warmer's own state: dedup, dead letters, access records, in their own DB."""

from __future__ import annotations

import time

import pytest
import redis

from tests.support.registry import free_port
from worker.config.settings import load_settings
from worker.core.clients import build_state
from worker.errors import StateError
from worker.state import StateStore, pulls
from worker.state.deadletters import MAX_LETTER_BYTES, MAX_REASON_CHARS


def test_ids_are_unseen_until_marked_and_marks_expire(
    state: StateStore, state_redis: redis.Redis
) -> None:
    assert state.unseen(["a", "b"]) == ["a", "b"]
    state.mark_seen(["a"])
    assert state.unseen(["a", "b"]) == ["b"]
    assert 0 < state_redis.ttl("warmer:seen:a") <= 24 * 3600


def test_admit_tracks_each_fresh_event_once_and_marks_nothing_seen(
    state: StateStore, state_redis: redis.Redis
) -> None:
    state.mark_seen(["old"])
    ids = ["old", "a", "b", "a"]  # a resend, and one id twice in the batch
    messages = [[i, "warm-blob", "repo", f"sha256:{n}"] for n, i in enumerate(ids)]
    assert state.admit(ids, messages, 1e12) == [False, True, True, False]
    # The ledger holds the fresh events' messages only: nothing is sent twice from it.
    assert sorted(m[0] for m in state.due(2e12, 10)) == ["a", "b"]
    # Seen only once the broker has them: until then a resend is fresh again.
    assert state.unseen(["a", "b"]) == ["a", "b"]
    assert state.admit(["a"], [messages[1]], 1e12) == [True]
    state.mark_seen(["a", "b"])
    assert state.unseen(["a", "b", "c"]) == ["c"]
    assert 0 < state_redis.ttl("warmer:seen:a") <= 24 * 3600
    assert state.admit(["a"], [messages[1]], 1e12) == [False]
    assert state.admit([], [], 1e12) == []


def test_dead_letters_keep_reason_and_event_in_order(state: StateStore) -> None:
    assert state.dead_letter([("first", {"id": 1}), ("second", "raw text")]) == 2
    letters = state.dead_letters()
    assert [(d.reason, d.event) for d in letters] == [("first", {"id": 1}), ("second", "raw text")]
    assert state.dead_letter_count() == 2
    taken = state.pop_dead_letters(1)
    assert [d.reason for d in taken] == ["first"]
    assert state.purge_dead_letters() == 1
    assert state.dead_letter_count() == 0


def test_access_records_order_repositories_by_last_pull(state: StateStore) -> None:
    state.record_access(["old"])
    state.record_access(["new"])
    assert state.recently_pulled() == ["new", "old"]


def test_an_unreachable_state_redis_raises_state_error() -> None:
    settings = load_settings(state_url=f"redis://127.0.0.1:{free_port()}/2", redis_timeout=0.5)
    state = build_state(settings)
    with pytest.raises(StateError, match="state Redis"):
        state.unseen(["a"])


def test_a_huge_dead_letter_is_kept_cut_with_its_length_and_hash(
    state: StateStore, state_redis: redis.Redis
) -> None:
    state.dead_letter([("r" * 10_000, {"events": ["x" * 1_000_000]})])
    (letter,) = state.dead_letters()
    assert len(letter.reason) <= MAX_REASON_CHARS
    assert isinstance(letter.event, str)
    assert letter.event.startswith("<event of 1000016 characters, sha256 ")
    (stored,) = state_redis.lrange("warmer:deadletter", 0, -1)  # what Redis holds, whole
    assert len(stored) <= MAX_LETTER_BYTES


def test_the_hot_list_is_the_last_hours_pulls_and_the_records_are_capped(
    state: StateStore, state_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()
    state.record_pulls({"old/app": 3}, at=now - 2 * 3600)
    state.record_pulls({"a/app": 1, "b/app": 2}, at=now - 600)
    state.record_pulls({"c/app": 1}, at=now - 60)
    # Pulled within the hour, newest first: what a heal warms first; the older one after.
    assert state.recently_pulled() == ["c/app", "b/app", "a/app"]
    assert state.pulls_total() == 7
    monkeypatch.setattr(pulls, "MAX_REPOSITORIES", 2)
    state.record_pulls({"d/app": 1}, at=now)
    # The two most recently pulled stay, with their counts; the others' counts go with them.
    assert state_redis.zrange("warmer:access", 0, -1) == [b"c/app", b"d/app"]
    assert set(state_redis.hkeys("warmer:pulls")) == {b"c/app", b"d/app"}
    assert state.pulls_total() == 8
    # A key grown past the cap (an earlier release kept every repository) shrinks by a bounded
    # number each call: no command of unbounded length.
    monkeypatch.setattr(pulls, "_TRIM_PER_CALL", 1)
    state_redis.zadd("warmer:access", {"x/1": 1, "x/2": 2, "x/3": 3})
    state.record_pulls({"e/app": 1}, at=now + 1)
    assert state_redis.zcard("warmer:access") == 5
