"""A subscribe's broker work on Redis (presence, the join announce, the history read) in one
round trip, against a real redis-server.

Differential: ``RedisBroker.join_and_read`` (one MULTI/EXEC pipeline) and the base broker's
three separate calls (``Broker.join_and_read``, the twin) leave the same presence, announce the
same record and return the same page; the twin takes three connections from the pool for it,
the pipeline one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from limpet.errors import BrokerError
from limpet.hub.brokers.base import Broker, BrokerOptions, JoinRead
from limpet.hub.brokers.redis import RedisBroker
from limpet.hub.channels import PresenceEvent, decode_envelope

WAYS: dict[str, Callable[..., Any]] = {
    "pipeline": RedisBroker.join_and_read,
    "three calls (twin)": Broker.join_and_read,
}


@pytest.fixture
async def broker(redis_server: Any) -> AsyncIterator[RedisBroker]:
    broker = RedisBroker(redis_server.url, BrokerOptions())
    try:
        yield broker
    finally:
        await broker.close()


def count_checkouts(broker: RedisBroker) -> list[int]:
    pool = broker.redis.connection_pool
    taken = [0]
    original = pool.get_connection

    async def get_connection(*args: Any, **kw: Any) -> Any:
        taken[0] += 1
        return await original(*args, **kw)

    pool.get_connection = get_connection
    return taken


async def join(way: str, broker: RedisBroker, channel: str, since: int | None) -> JoinRead:
    member = {"user": "ann", "replica": "r1"}
    record = PresenceEvent(channel, "join", "sid-1", member)
    result: JoinRead = await WAYS[way](broker, channel, {"sid-1": member}, record, since, 100)
    return result


@pytest.mark.parametrize("way", list(WAYS))
async def test_presence_announce_and_history_in_one_round_trip(
    way: str, broker: RedisBroker, redis_server: Any
) -> None:
    channel = f"jr-{uuid.uuid4().hex[:8]}"
    for n in range(3):
        await broker.publish(channel, {"n": n})
    await broker.history(channel, None, 0)  # the script is loaded (as after any first read)
    listener = aioredis.from_url(redis_server.url)
    pubsub = listener.pubsub()
    await pubsub.subscribe(broker._live(channel))
    try:
        taken = count_checkouts(broker)
        page, joined, failure = await join(way, broker, channel, since=1)
        assert taken[0] == (1 if way == "pipeline" else 3)
        assert (joined, failure) == (True, None)
        assert page == await broker.history(channel, 1, 100)
        assert [m.data for m in page.messages] == [{"n": 1}, {"n": 2}]
        assert [m.get("id") for m in await broker.presence(channel)] == ["sid-1"]
        announced = None
        for _ in range(50):  # None: nothing yet, or the subscribe confirmation (skipped)
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message is not None:
                announced = decode_envelope(message["data"])
                break
        assert announced is not None, "no join announced"
        assert announced == PresenceEvent(
            channel, "join", "sid-1", {"user": "ann", "replica": "r1"}
        )
    finally:
        await pubsub.aclose()
        await listener.aclose()


@pytest.mark.parametrize("way", list(WAYS))
async def test_a_redis_without_the_script_still_reads(
    way: str, broker: RedisBroker, redis_server: Any
) -> None:
    """A restarted Redis has no scripts: the pipeline's EVALSHA fails and the read is made
    again with the script loaded; nothing else is done twice."""
    channel = f"jr-{uuid.uuid4().hex[:8]}"
    await broker.publish(channel, "kept")
    await broker.redis.script_flush()
    page, joined, failure = await join(way, broker, channel, since=0)
    assert (joined, failure) == (True, None)
    assert [m.data for m in page.messages] == ["kept"]
    assert len(await broker.presence(channel)) == 1


@pytest.mark.parametrize("way", list(WAYS))
async def test_a_presence_failure_is_reported_and_the_read_still_made(
    way: str, broker: RedisBroker
) -> None:
    """Presence is not part of delivery: a write that fails (here a key of the wrong type) is
    returned, not raised, and the subscriber still gets its page."""
    channel = f"jr-{uuid.uuid4().hex[:8]}"
    await broker.publish(channel, "kept")
    await broker.redis.set(broker._key(channel, "presence"), "not a sorted set")
    page, joined, failure = await join(way, broker, channel, since=0)
    assert not joined
    assert isinstance(failure, BrokerError)
    assert [m.data for m in page.messages] == ["kept"]


@pytest.mark.parametrize("way", list(WAYS))
async def test_a_history_failure_fails_the_subscribe(way: str, broker: RedisBroker) -> None:
    channel = f"jr-{uuid.uuid4().hex[:8]}"
    await broker.redis.set(broker._key(channel, "stream"), "not a stream")
    await broker.redis.set(broker._key(channel, "meta"), "not a hash")
    with pytest.raises(BrokerError, match="history"):
        await asyncio.wait_for(join(way, broker, channel, since=0), 10)


@pytest.mark.parametrize("way", list(WAYS))
async def test_subscribes_that_arrive_together_share_one_transaction(
    way: str, broker: RedisBroker
) -> None:
    """A storm: 20 subscribes at once, each on a channel of its own with its own history.
    Each gets its own page and presence; the pipeline sends them as one transaction, the
    twin takes three connections from the pool for each."""
    channels = [f"jr-{uuid.uuid4().hex[:8]}" for _ in range(20)]
    for i, channel in enumerate(channels):
        for n in range(i % 3 + 1):
            await broker.publish(channel, {"c": i, "n": n})
    await broker.history(channels[0], None, 0)  # the script is loaded
    taken = count_checkouts(broker)
    results = await asyncio.gather(*(join(way, broker, c, since=0) for c in channels))
    assert taken[0] == (1 if way == "pipeline" else 3 * len(channels))
    for i, (channel, (page, joined, failure)) in enumerate(zip(channels, results, strict=True)):
        assert (joined, failure) == (True, None)
        assert [m.data for m in page.messages] == [{"c": i, "n": n} for n in range(i % 3 + 1)]
        assert [m.get("id") for m in await broker.presence(channel)] == ["sid-1"]


async def test_a_closing_broker_fails_the_subscribes_it_holds(redis_server: Any) -> None:
    """Nothing waits forever: subscribes queued when the broker closes get an error."""
    broker = RedisBroker(redis_server.url, BrokerOptions())
    channel = f"jr-{uuid.uuid4().hex[:8]}"
    pending = asyncio.ensure_future(join("pipeline", broker, channel, since=None))
    await asyncio.sleep(0)  # queued; its transaction not sent yet
    await broker.close()
    with pytest.raises(BrokerError):
        await asyncio.wait_for(pending, 10)
