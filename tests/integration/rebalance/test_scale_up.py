"""A scale-up that the sessions follow: socket.io clients (limpet.client, python-socketio under
it) through `limpet proxy --affinity engineio --rebalance` to two `limpet hub` replicas on a
real redis-server; a publisher sends to one channel throughout. The config is rewritten with
four replicas and the proxy gets SIGHUP (a scale-up, as discovery's would be).

- with ``rebalance`` on, each replica ends with 25 % ± 5 % of the clients, by the replicas' own
  count (``/healthz`` of each hub), and every subscriber's ledger shows 0 lost, 0 duplicated,
  in order (moved WebSockets are closed with 1012; the client reconnects and the hub replays);
- the twin, ``rebalance`` off: the two new replicas hold (almost) none of them;
- two proxy replicas behind a round-robin L4 front (`limpet proxy --mode tcp`) reach the same
  spread without a shared store.

The issue asks for 300 clients; on a shared 2-core machine 60 keep the test well under a minute
and still put 15 clients on each replica, so the ± 5 % bound (± 3 clients) is meaningful.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from limpet.client import Client, Gap, Message
from tests.conftest import BrokerServer
from tests.support.ledger import Log, score
from tests.support.procs import Procs
from tests.support.scaling import Rig, eventually

CLIENTS = 60


class Subscriber:
    def __init__(self, url: str, channel: str) -> None:
        self.client = Client(
            url, transports=["websocket"], reconnection_delay=0.1, reconnection_delay_max=0.5
        )
        self.channel = channel
        self.log = Log()
        self.gaps: list[Gap] = []

    async def run(self) -> None:
        await self.client.connect()
        async with self.client.subscribe(self.channel) as sub:
            async for item in sub:
                if isinstance(item, Message):
                    self.log.message(item.epoch, item.offset, item.data["key"])
                elif isinstance(item, Gap):
                    self.gaps.append(item)
                    self.log.notice(item.to.epoch, item.to.offset)

    @property
    def offset(self) -> int:
        last = self.log.last()
        return last.offset if last is not None else 0

    @property
    def ready(self) -> bool:
        sub = self.client.subscriptions.get(self.channel)
        return sub is not None and sub.ready.done()


async def scale_up(
    procs: Procs, broker: str, *, rebalance: bool, proxies: int = 1
) -> dict[str, Any]:
    rig = await asyncio.to_thread(Rig, procs, broker, rebalance=rebalance, proxies=proxies)
    channel = f"scale-{uuid.uuid4().hex[:8]}"
    subs = [Subscriber(rig.url, channel) for _ in range(CLIENTS)]
    tasks = [asyncio.create_task(s.run()) for s in subs]
    acked: dict[str, tuple[str, int]] = {}
    stop = asyncio.Event()

    async def publish() -> None:
        n = 0
        while not stop.is_set():
            acked[f"pub:{n}"] = await asyncio.to_thread(rig.publish, channel, n)
            n += 1
            await asyncio.sleep(0.02)

    publisher: asyncio.Task[None] | None = None
    try:
        await eventually(lambda: all(s.ready for s in subs), 40, "every subscriber ready")
        publisher = asyncio.create_task(publish())  # every subscriber is owed every message
        before = await asyncio.to_thread(rig.clients_per_hub)
        assert sum(before[:2]) == CLIENTS and before[2:] == [0, 0], before
        rig.scale_to(4)
        await eventually(lambda: rig.scaled(4), 20, lambda: rig.status())
        result: dict[str, Any] = {"before": before}
        if rebalance:
            low, high = CLIENTS * 0.20, CLIENTS * 0.30

            def even() -> list[int] | None:
                counts = rig.clients_per_hub()
                ready = all(s.ready for s in subs)
                return counts if ready and all(low <= c <= high for c in counts) else None

            result["after"] = await eventually(
                even, 40, lambda: (rig.clients_per_hub(), rig.status()["rebalance"])
            )
        else:
            # the twin: five ticks of the proxy's session accounting after the scale-up (the
            # rebalance would have moved 25 % of the clients by then: hold 1 s, 20 a second)
            ticks = len(rig.status()["rebalance"]["history"])
            await eventually(
                lambda: len(rig.status()["rebalance"]["history"]) >= min(ticks + 5, 60),
                30,
                "five ticks",
            )
            result["after"] = await asyncio.to_thread(rig.clients_per_hub)
        stop.set()
        await publisher
        last = max(offset for _, offset in acked.values())
        await eventually(
            lambda: all(s.offset >= last for s in subs),
            30,
            lambda: f"every subscriber at offset {last}: {sorted(s.offset for s in subs)[:5]}",
        )
        result["scores"] = [score(s.log, acked) for s in subs]
        result["gaps"] = sum(len(s.gaps) for s in subs)
        result["status"] = [await asyncio.to_thread(rig.status, i) for i in range(proxies)]
        result["published"] = len(acked)
        return result
    finally:
        stop.set()
        rest = [*tasks, *([publisher] if publisher else [])]
        for t in rest:
            t.cancel()
        await asyncio.gather(*rest, return_exceptions=True)
        await asyncio.gather(*(s.client.close() for s in subs), return_exceptions=True)


async def test_a_scale_up_evens_out_with_nothing_lost(
    procs: Procs, redis_server: BrokerServer
) -> None:
    result = await scale_up(procs, redis_server.url, rebalance=True)
    after = result["after"]
    assert all(0.20 * CLIENTS <= c <= 0.30 * CLIENTS for c in after), after
    for s in result["scores"]:
        assert s.lost_silently == 0 and s.lost_announced == 0, s
        assert s.duplicated == 0 and s.out_of_order == 0, s
        assert s.delivered >= result["published"]
    assert result["gaps"] == 0
    moves = result["status"][0]["rebalance"]["moves"]
    assert moves.get("spread", 0) >= CLIENTS // 4, moves


async def test_twin_without_rebalance_the_new_replicas_stay_empty(
    procs: Procs, redis_server: BrokerServer
) -> None:
    result = await scale_up(procs, redis_server.url, rebalance=False)
    after = result["after"]
    assert after[2] + after[3] <= 2, after
    assert result["status"][0]["rebalance"]["moves"] == {}


async def test_two_proxy_replicas_reach_the_same_spread(
    procs: Procs, redis_server: BrokerServer
) -> None:
    """Two proxies behind a round-robin `--mode tcp` front, no shared store: each sees about
    half of the sessions and evens out its own half, and the halves add up to an even whole
    (the twin is the one above: without rebalance the new replicas stay empty)."""
    result = await scale_up(procs, redis_server.url, rebalance=True, proxies=2)
    after = result["after"]
    assert all(0.20 * CLIENTS <= c <= 0.30 * CLIENTS for c in after), after
    for s in result["scores"]:
        assert (s.lost_silently, s.lost_announced, s.duplicated, s.out_of_order) == (0, 0, 0, 0)
    for status in result["status"]:  # each replica moved its own share
        assert status["rebalance"]["moves"].get("spread", 0) >= CLIENTS // 10, status["rebalance"]
