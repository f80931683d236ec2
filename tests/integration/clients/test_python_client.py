"""limpet.client (Python) against a rolling restart: three hub replicas on a real redis-server
behind `limpet proxy --affinity engineio`; every replica is killed and started again in turn and
the proxy once, while a publisher (the library too) sends messages. Every library subscriber ends
with every offset exactly once, in order, with no reconnect code of its own; the twin, the plain
python-socketio client that only subscribes again on reconnect, misses messages in the same run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
import socketio

from limpet.client import Client, ClientError, Gap, Message
from tests.conftest import BrokerServer
from tests.support.procs import Procs, free_port
from tests.support.rolling import Cluster, plan

TOTAL = 1000


async def eventually(predicate: Any, timeout: float, what: Any) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        await asyncio.sleep(0.02)


class Collector:
    """A library subscriber: what it was given, in order."""

    def __init__(self, client: Client, channel: str) -> None:
        self.client = client
        self.channel = channel
        self.messages: list[Message] = []
        self.gaps: list[Gap] = []

    async def run(self) -> None:
        async with self.client.subscribe(self.channel) as sub:
            async for item in sub:
                if isinstance(item, Gap):
                    self.gaps.append(item)
                elif isinstance(item, Message):
                    self.messages.append(item)


class PlainTwin:
    """The plain python-socketio client: reconnects by itself and subscribes again, without since."""

    def __init__(self, channel: str) -> None:
        self.offsets: list[int] = []
        self.sio = socketio.AsyncClient(reconnection_delay=1, reconnection_delay_max=5)
        self.sio.on("connect", self._on_connect)
        self.sio.on("message", lambda m: self.offsets.append(m["offset"]))
        self.channel = channel

    async def _on_connect(self) -> None:
        await self.sio.emit("subscribe", {"channel": self.channel})


async def test_rolling_restart_every_offset_once_in_order(
    procs: Procs, redis_server: BrokerServer
) -> None:
    cluster = Cluster(procs, redis_server.url)
    channel = f"roll-py-{uuid.uuid4().hex[:8]}"
    fast = {"reconnection_delay": 0.1, "reconnection_delay_max": 1.0}
    clients = [
        Client(cluster.url, **fast),
        Client(cluster.url, **fast),
        Client(cluster.url, transports=["polling"], **fast),
    ]
    publisher = Client(cluster.url, **fast)
    events: list[Any] = []
    for name in ("connect", "disconnect", "connect_error"):
        clients[2].on(
            name, lambda info, name=name: events.append((round(time.monotonic(), 2), name, info))
        )
    twin = PlainTwin(channel)
    tasks: list[asyncio.Task[None]] = []
    try:
        for c in [*clients, publisher]:
            await c.connect()
        collectors = [Collector(c, channel) for c in clients]
        tasks = [asyncio.create_task(col.run()) for col in collectors]
        await eventually(
            lambda: all(
                c.subscriptions.get(channel) and c.subscriptions[channel].ready.done()
                for c in clients
            ),
            15,
            "subscribed",
        )
        await twin.sio.connect(cluster.url, transports=["websocket"], wait_timeout=10)

        steps = plan(TOTAL)
        gates = {s.at: asyncio.Event() for s in steps}
        waiting: dict[int, asyncio.Event] = {s.at: asyncio.Event() for s in steps}
        acks: list[int] = []

        async def publish_all() -> None:
            for n in range(TOTAL):
                if n in gates:
                    waiting[n].set()
                    await gates[n].wait()
                ack = await publisher.publish(channel, {"n": n})
                acks.append(ack.offset)

        released: list[int] = []

        async def at_gate(n: int) -> None:
            await asyncio.wait_for(waiting[n].wait(), 40)
            released.append(n)

        flow = asyncio.create_task(publish_all())
        await asyncio.wait_for(cluster.run(steps, at_gate, lambda: gates[released[-1]].set()), 50)
        await asyncio.wait_for(flow, 40)
        assert sorted(acks) == list(range(1, TOTAL + 1)), "each publish stored once"

        everything = list(range(1, TOTAL + 1))
        for col in collectors:
            await eventually(
                lambda col=col: len(col.messages) >= TOTAL,
                30,
                lambda: (
                    f"subscribers to catch up: {[(len(c.messages), c.client) for c in collectors]}"
                    f" {[c.client.subscriptions.get(channel) for c in collectors]}; polling client: {events[:20]}"
                ),
            )
        for col in collectors:
            assert [m.offset for m in col.messages] == everything
            assert [m.data["n"] for m in col.messages] == list(range(TOTAL))
            assert col.gaps == []
        assert all(c.connections >= 3 for c in clients), [c.connections for c in clients]
        assert cluster.done == [s.what for s in steps]

        # the twin, in the same run: it subscribed again after each reconnect, from "now"
        assert set(everything) - set(twin.offsets), "the plain client missed nothing?"
    finally:
        for task in tasks:
            task.cancel()
        for c in [*clients, publisher]:
            await c.close()
        try:
            await asyncio.wait_for(twin.sio.disconnect(), 1)
        except Exception:
            pass


async def test_refused_channel_raises_and_unreachable_hub_is_a_clear_error(
    procs: Procs, redis_server: BrokerServer
) -> None:
    with pytest.raises(ClientError, match="could not connect"):
        async with Client("http://127.0.0.1:9", connect_timeout=1.0):
            pass
    cluster = Cluster(procs, redis_server.url, replicas=1)
    async with Client(cluster.hub_url(0)) as client:
        with pytest.raises(ClientError, match="subscribe bad channel!: "):
            async with client.subscribe("bad channel!"):
                pass
        with pytest.raises(ClientError, match="payload too large"):
            await client.publish("ok.channel", "x" * 100_000)


async def test_history_lost_is_yielded_as_a_gap_then_delivery_goes_on(procs: Procs) -> None:
    # A redis-server without persistence restarted: the channel's history is gone and its epoch
    # new. The subscriber is told once, as a Gap in the stream, and carries on from the new epoch.
    from tests.conftest import start_redis

    redis = start_redis(procs)
    cluster = Cluster(procs, redis.url, replicas=1)
    channel = f"gap-{uuid.uuid4().hex[:8]}"
    client = Client(cluster.hub_url(0), reconnection_delay=0.1)
    async with client, client.subscribe(channel) as sub:
        for n in range(3):
            await sub.publish(n)
        got = [await anext(sub) for _ in range(3)]
        assert [m.offset for m in got if isinstance(m, Message)] == [1, 2, 3]
        before = sub.position
        assert before is not None and before.offset == 3
        await asyncio.to_thread(redis.stop)
        await asyncio.to_thread(redis.start)
        await sub.publish("after")  # retried while the hub reconnects to its broker
        gap = await asyncio.wait_for(anext(sub), 20)
        assert isinstance(gap, Gap), gap
        assert gap.from_ == before and gap.reason == "epoch-changed"
        assert gap.to.epoch != before.epoch
        # "after" is in the gap or just after it, depending on when the hub re-synced
        await sub.publish("next")
        after: list[Message] = []
        while not after or after[-1].data != "next":
            item = await asyncio.wait_for(anext(sub), 20)
            assert isinstance(item, Message), item
            after.append(item)
        offsets = [m.offset for m in after]
        assert offsets == list(range(gap.to.offset + 1, gap.to.offset + 1 + len(after)))
        assert {m.epoch for m in after} == {gap.to.epoch}
        assert sub.position == after[-1].position


async def test_a_consumer_slower_than_its_queue_loses_nothing(
    procs: Procs, redis_server: BrokerServer
) -> None:
    # The subscription's queue holds at most max_queue messages; past it the client drops what
    # arrives and, once the application has read half of it, asks the hub again from the last
    # queued position: every offset still arrives once, in order, and memory stays bounded.
    cluster = Cluster(procs, redis_server.url, replicas=1)
    channel = f"slow-{uuid.uuid4().hex[:8]}"
    client = Client(cluster.hub_url(0), max_queue=20)
    async with client, client.subscribe(channel) as sub:
        for n in range(200):
            await sub.publish(n)
        assert len(sub._items) <= 20
        offsets = []
        while len(offsets) < 200:
            item = await asyncio.wait_for(anext(sub), 10)
            assert isinstance(item, Message), item
            offsets.append(item.offset)
            assert len(sub._items) <= 21
        assert offsets == list(range(1, 201))


async def test_token_is_sent_and_a_refused_connection_is_a_clear_error(procs: Procs) -> None:
    import jwt

    secret = "s3cret-for-tests-only-0123456789ab"
    port = free_port()
    procs.limpet(
        "hub", "--listen", f"127.0.0.1:{port}", "--jwt-secret", secret,
        wait_for=("127.0.0.1", port),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    token = jwt.encode({"sub": "ann", "channels": ["ok.*"]}, secret, algorithm="HS256")
    async with Client(url, token=token) as client:
        async with client.subscribe("ok.one") as sub:
            assert (await sub.publish(1)).offset == 1
        with pytest.raises(ClientError, match="does not grant"):
            async with client.subscribe("other.one"):
                pass
    with pytest.raises(ClientError, match=r"connection refused: .*bad JWT"):
        async with Client(url, token="not-a-jwt"):
            pass


async def test_iteration_ends_on_unsubscribe_and_raises_on_refusal(
    procs: Procs, redis_server: BrokerServer
) -> None:
    cluster = Cluster(procs, redis_server.url, replicas=1)
    async with Client(cluster.hub_url(0)) as client:
        refused = client.subscribe("bad channel!")
        with pytest.raises(ClientError, match="subscribe bad channel!"):
            async for _ in refused:
                pass
        sub = client.subscribe(f"end-{uuid.uuid4().hex[:8]}")
        await sub.ready
        await sub.publish(1)
        first = await anext(sub)
        assert isinstance(first, Message) and first.data == 1
        await sub.unsubscribe()
        assert [item async for item in sub] == []
        await client.close()
        with pytest.raises(ClientError, match="client is closed"):
            client.subscribe("x")
