"""The receiver's figures (accepted, duplicates) against real Redis, whatever the envelope's size:
requests sharing a batch, batches published in chunks of 500, an id twice in one envelope.

Each distinct event id of an envelope is counted once: accepted when this request handed it to the
broker, a duplicate when it was seen before or another request of the same batch had it first.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest

from tests.support.notifications import envelope, event
from worker.receiver.batcher import DEFAULT_MAX_SIZE
from worker.receiver.webhook import create_webhook
from worker.state import StateStore

D = "sha256:" + "d" * 64
HEADERS = {"content-type": "application/vnd.docker.distribution.events.v1+json"}
#: Long enough that a batch leaves only when it is full: which requests share one is then known.
HOUR = 3600.0


class Published:
    """What reached the broker side, batch by batch."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    def __call__(self, messages: list[Any]) -> None:
        self.batches.append(messages)

    @property
    def ids(self) -> list[str]:
        return [m[0] for batch in self.batches for m in batch]


def _figures(response: Any) -> tuple[int, int]:
    assert response.status_code == 202, response.text
    answer = response.json()
    return answer["accepted"], answer["duplicates"]


def _together(state: StateStore, published: Published, max_size: int, *bodies: bytes) -> list[Any]:
    """POST a first lone event (it leaves at once), then ``bodies`` at the same time: with an
    hour's window they wait for each other, and leave as one batch once it holds ``max_size``."""
    app = create_webhook(
        state=state, publish=published, token=None, first_wait=60, window=HOUR, max_size=max_size
    )

    async def main() -> list[Any]:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://warmer") as client:
            first = await client.post(
                "/events", content=envelope(event("push", "a", D)), headers=HEADERS
            )
            assert first.status_code == 202
            posts = (client.post("/events", content=body, headers=HEADERS) for body in bodies)
            # The deadline: a batch that never filled would wait the hour.
            return list(await asyncio.wait_for(asyncio.gather(*posts), 30))

    return asyncio.run(main())


@pytest.mark.parametrize(
    ("count", "max_size"),
    [
        (300, DEFAULT_MAX_SIZE),  # 600 in the batch: published as 500, then 100
        (100, 200),  # the batch in one chunk
    ],
    ids=["across-chunks", "one-chunk"],
)
def test_the_same_events_posted_together_are_accepted_once_and_duplicates_once(
    state: StateStore, count: int, max_size: int
) -> None:
    published = Published()
    body = envelope(*(event("push", "a", D, event_id=f"e{i}") for i in range(count)))
    answers = _together(state, published, max_size, body, body)
    # Whichever request came first in the batch has every event; the other has none. (Both
    # said "200 accepted, 100 duplicates" for 300: the ids seen in the second chunk, the second
    # request's last 100, were counted as duplicates of both requests.)
    assert sorted(_figures(a) for a in answers) == [(0, count), (count, 0)]
    assert sorted(published.ids[1:]) == sorted(f"e{i}" for i in range(count))
    assert state.pending_count() == count + 1  # the lone first event, and each of these once


def test_an_envelope_over_500_with_repeats_is_counted_once_per_event_id(
    state: StateStore,
) -> None:
    published = Published()
    app = create_webhook(state=state, publish=published, token=None, first_wait=60)
    # 700 events, 600 ids: the last 100 repeat ids of the first chunk.
    events = [event("push", "a", D, event_id=f"e{i}") for i in [*range(600), *range(100)]]
    body = envelope(*events)

    async def main() -> list[Any]:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://warmer") as client:
            return [await client.post("/events", content=body, headers=HEADERS) for _ in "12"]

    first, again = asyncio.run(main())
    assert _figures(first) == (600, 0)
    assert _figures(again) == (0, 600)  # the registry's resend: nothing new
    assert [len(b) for b in published.batches] == [500, 100]
    assert sorted(published.ids) == sorted(f"e{i}" for i in range(600))
