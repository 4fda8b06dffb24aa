"""The one polling helper (worker.cli.processes.wait_until): its value, its deadline, its error."""

from __future__ import annotations

import time

import pytest

from worker.cli.processes import wait_until


def test_the_first_true_value_is_returned() -> None:
    answers: list[object] = [None, 0, "", [], {"blobs": 3}, {"blobs": 4}]
    found = wait_until(lambda: answers.pop(0), timeout=5, what="a summary", interval=0)
    assert found == {"blobs": 3}


def test_a_timeout_names_what_was_awaited_and_keeps_to_the_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"timed out after 0\.2s waiting for the moon"):
        wait_until(lambda: False, timeout=0.2, what="the moon", interval=10)
    # The interval is cut at the deadline: no sleep of 10 s past it.
    assert time.monotonic() - started < 2


def test_what_the_predicate_raises_goes_through() -> None:
    def broken() -> bool:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError, match="refused"):
        wait_until(broken, timeout=5, what="a server")
