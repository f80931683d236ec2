"""The memory broker: shared offsets, routing only to subscribed replicas, presence TTL."""

from __future__ import annotations

import pytest

from limpet.errors import UsageError
from limpet.hub.brokers import memory as memory_module
from limpet.hub.brokers import open_broker
from limpet.hub.brokers.base import BrokerOptions
from limpet.hub.brokers.memory import MemoryBackplane, MemoryBroker
from limpet.hub.channels import Envelope, Message, Position, PresenceEvent


def replicas(count: int, **options: float) -> tuple[list[MemoryBroker], list[list[Envelope]]]:
    plane = MemoryBackplane()
    brokers = [MemoryBroker(BrokerOptions(**options), backplane=plane) for _ in range(count)]  # type: ignore[arg-type]
    received: list[list[Envelope]] = [[] for _ in brokers]
    for broker, inbox in zip(brokers, received, strict=True):
        broker.on_envelope = inbox.append
    return brokers, received


async def test_offsets_are_shared_and_routing_follows_subscriptions() -> None:
    (b1, b2, b3), (r1, r2, r3) = replicas(3)
    await b2.subscribe("c")
    p1, _ = await b1.publish("c", "a")
    p2, _ = await b3.publish("c", "b")
    assert (p1.offset, p2.offset) == (1, 2) and p1.epoch == p2.epoch
    assert [m.offset for m in r2 if isinstance(m, Message)] == [1, 2]
    assert r1 == [] and r3 == []  # not subscribed: nothing routed to them
    await b2.unsubscribe("c")
    await b1.publish("c", "x")
    assert len(r2) == 2
    page = await b3.history("c", 1, 10)
    assert [m.data for m in page.messages] == ["b", "x"] and page.position == Position(p1.epoch, 3)


async def test_idempotency_key_across_replicas() -> None:
    (b1, b2), (_, r2) = replicas(2)
    await b2.subscribe("c")
    first, dup1 = await b1.publish("c", 1, idempotency_key="k")
    again, dup2 = await b2.publish("c", 1, idempotency_key="k")
    assert (dup1, dup2) == (False, True) and first == again
    assert len(r2) == 1  # the duplicate was not fanned out


async def test_presence_expires_without_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_000_000]
    monkeypatch.setattr(memory_module, "now_ms", lambda: clock[0])
    (b1, b2), (_, r2) = replicas(2, presence_ttl=10.0)
    await b1.presence_touch("c", {"s1": {"user": "alice"}})
    await b2.presence_touch("c", {"s2": {"user": "bob"}})
    assert [m["id"] for m in await b1.presence("c")] == ["s1", "s2"]
    clock[0] += 6_000
    await b2.presence_touch("c", {"s2": {"user": "bob"}})  # b2 heartbeats, b1 has died
    clock[0] += 6_000
    assert await b1.presence("c") == [{"id": "s2", "user": "bob"}]
    await b2.subscribe("c")
    await b1.announce("c", PresenceEvent("c", "leave", "s1"))
    assert r2 == [PresenceEvent("c", "leave", "s1")]


def test_open_broker_urls() -> None:
    assert open_broker("memory", BrokerOptions()).kind == "memory"
    assert open_broker("memory://x", BrokerOptions()).plane is memory_module.backplane("x")
    with pytest.raises(UsageError):
        open_broker("kafka://h:1", BrokerOptions())
