"""Coalescing: many submitters, few batches, and each submitter learns its batch's fate."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from worker.receiver.batcher import Batcher


def test_concurrent_submissions_leave_as_one_batch() -> None:
    sent: list[list[Any]] = []

    async def main() -> None:
        batcher = Batcher(sent.append, window=0.05, max_size=1000)
        await asyncio.gather(*(batcher.submit([[i]]) for i in range(100)))

    asyncio.run(main())
    assert len(sent) == 1
    assert sorted(m[0] for m in sent[0]) == list(range(100))


def test_a_full_batch_leaves_without_waiting_for_the_window() -> None:
    sent: list[list[Any]] = []

    async def main() -> None:
        batcher = Batcher(sent.append, window=3600, max_size=10)
        await asyncio.wait_for(asyncio.gather(*(batcher.submit([[i]]) for i in range(10))), 5)

    asyncio.run(main())
    assert [len(b) for b in sent] == [10]


def test_an_oversized_submission_is_split_into_tasks_of_max_size() -> None:
    sent: list[list[Any]] = []

    async def main() -> None:
        await Batcher(sent.append, window=0, max_size=4).submit([[i] for i in range(10)])

    asyncio.run(main())
    assert [len(b) for b in sent] == [4, 4, 2]


def test_every_submitter_of_a_failed_batch_gets_the_error() -> None:
    def broken(_: list[Any]) -> None:
        raise ConnectionError("broker down")

    async def main() -> list[Any]:
        batcher = Batcher(broken, window=0.02)
        return await asyncio.gather(
            *(batcher.submit([[i]]) for i in range(5)), return_exceptions=True
        )

    results = asyncio.run(main())
    assert all(isinstance(r, ConnectionError) for r in results)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="max_size"):
        Batcher(print, max_size=0)


def test_a_lone_submission_leaves_at_once_and_the_next_waits_the_window() -> None:
    sent: list[list[Any]] = []

    async def main() -> None:
        batcher = Batcher(sent.append, window=3600, max_size=1000)
        # Nothing left within the window before it: no wait (wait_for fails the test if it did).
        await asyncio.wait_for(batcher.submit([[1]]), 5)
        second = asyncio.ensure_future(batcher.submit([[2]]))
        await asyncio.sleep(0.05)
        assert not second.done()  # within the window of the first: it gathers company
        await batcher.drain()
        await second

    asyncio.run(main())
    assert sent == [[[1]], [[2]]]
