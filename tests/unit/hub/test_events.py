"""Channel events: records, the retry schedule, occupancy, and the memory broker's queue."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limpet.hub.brokers.base import BrokerOptions
from limpet.hub.brokers.memory import MemoryBackplane, MemoryBroker, MemoryEventQueue
from limpet.hub.events.records import (
    ChannelEvent,
    decode_event,
    encode_event,
    new_event_id,
    occupancy,
)
from limpet.hub.events.retry import backoff


def test_an_event_round_trips_and_leaves_out_what_it_lacks() -> None:
    event = ChannelEvent(new_event_id(), "publish", "c", 5, offset=3, data={"a": [1]})
    raw = encode_event(event)
    assert b"client" not in raw and decode_event(raw) == event
    assert decode_event(b'{"id": "x", "type": "nonsense", "channel": "c", "ts": 1}') is None
    assert decode_event(b"not json") is None


@pytest.mark.parametrize(
    ("joined", "after", "changed", "expected"),
    [(True, 1, True, "occupied"), (True, 2, True, None), (True, 1, False, None),
     (False, 0, True, "vacated"), (False, 1, True, None), (False, 0, False, None)],
)  # fmt: skip
def test_occupancy(joined: bool, after: int, changed: bool, expected: str | None) -> None:
    assert occupancy(joined, after, changed) == expected


@given(st.integers(1, 100), st.floats(0, 0.999))
def test_backoff_is_capped_and_grows(attempt: int, jitter: float) -> None:
    delay = backoff(attempt, jitter=jitter)
    assert 0 < delay <= 2.0
    assert backoff(attempt) <= backoff(attempt + 1)


async def test_the_memory_queue_is_bounded_and_ordered() -> None:
    queue = MemoryEventQueue()
    assert await queue.push([b"1", b"2", b"3"], limit=2) == 2
    entries = await queue.read(10)
    assert [r for _, r in entries] == [b"1", b"2"]
    await queue.delete([entries[0][0]])
    assert [r for _, r in await queue.read(10)] == [b"2"]
    assert await queue.lease("a", 10) and not await queue.lease("b", 10)
    assert await queue.lease("a", 10)


async def test_memory_occupancy_over_two_replicas() -> None:
    plane = MemoryBackplane()
    one = MemoryBroker(BrokerOptions(), backplane=plane)
    two = MemoryBroker(BrokerOptions(), backplane=plane)
    assert await one.presence_join("c", "a", {}) is True
    assert await two.presence_join("c", "b", {}) is False
    assert await one.presence_join("c", "a", {}) is False  # a refresh, not a new member
    assert await one.presence_leave("c", "a") is False
    assert await two.presence_leave("c", "b") is True
    assert await two.presence_leave("c", "b") is False  # twice: one vacated
    assert "c" not in plane.presence
