"""What a user of a plain python-socketio app (no hub) sees when the proxy rebalances: two
replicas of the app (rooms through python-socketio's Redis manager, per-connection state in the
process) behind `limpet proxy --affinity engineio`, one replica at first, a second added by
SIGHUP.

With ``rebalance`` on, half of the clients are moved: each sees a disconnect and an automatic
reconnect to the other replica, its per-connection state starts again (the counter kept in the
app's session is back to 1), and it is in its room again only because its connect handler joins
it. Messages sent to the room while it reconnected are not replayed: that is why rebalancing is
documented for backends that recover state (the hub, the drop-in manager) or keep none. The
twin, ``rebalance`` off: nobody is disconnected and every counter goes on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
import socketio

from tests.conftest import BrokerServer
from tests.support.admin import admin_get
from tests.support.procs import Procs, free_port, wait_listening
from tests.support.scaling import eventually

APP = Path(__file__).resolve().parents[2] / "support" / "plain_sio_app.py"
CLIENTS = 8


class User:
    """One client of the app: reconnects by itself and joins its room in its connect handler."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection_delay=0.1, reconnection_delay_max=0.5)
        self.connects = 0
        self.disconnects = 0
        self.messages: list[int] = []
        self.sio.on("connect", self.on_connect)
        self.sio.on("disconnect", self.on_disconnect)
        self.sio.on("message", lambda m: self.messages.append(m["n"]))

    async def on_connect(self) -> None:
        self.connects += 1
        await self.sio.emit("join", "lobby")

    def on_disconnect(self, *_: object) -> None:
        self.disconnects += 1

    async def call(self, event: str) -> object:
        return await self.sio.call(event, timeout=10)


@pytest.mark.parametrize("rebalance", [True, False], ids=["rebalance", "twin-off"])
async def test_what_a_plain_socketio_app_sees(
    procs: Procs, redis_server: BrokerServer, rebalance: bool
) -> None:
    ports = [free_port(), free_port()]
    apps = [
        procs.start([sys.executable, str(APP), str(p), redis_server.url, f"app{i}"])
        for i, p in enumerate(ports)
    ]
    for p, proc in zip(ports, apps, strict=True):
        await asyncio.to_thread(wait_listening, "127.0.0.1", p, proc=proc, timeout=20)
    port, admin = free_port(), free_port()
    config = procs.tmp / "proxy.yaml"

    def write(n: int) -> None:
        backends = "".join(
            f"      - {{id: app{i}, url: 'http://127.0.0.1:{p}'}}\n"
            for i, p in enumerate(ports[:n])
        )
        config.write_text(
            f"listeners: ['127.0.0.1:{port}']\nadmin: 127.0.0.1:{admin}\nsecret: plain\n"
            "pools:\n  app:\n    affinity: {mode: engineio}\n    health: {interval: 0.5}\n"
            f"    rebalance: {{enabled: {str(rebalance).lower()}, hold: 0.5, rate: 50,"
            " max-moving: 1.0, settle: 1}\n"
            f"    backends:\n{backends}"
        )

    write(1)
    proxy = procs.limpet("proxy", "--config", str(config), wait_for=("127.0.0.1", port))
    await asyncio.to_thread(wait_listening, "127.0.0.1", admin, proc=proxy, timeout=20)
    users = [User() for _ in range(CLIENTS)]
    try:
        for u in users:
            await u.sio.connect(f"http://127.0.0.1:{port}", transports=["websocket"])
        assert {await u.call("whoami") for u in users} == {"app0"}
        assert [await u.call("count") for u in users] == [1] * CLIENTS

        write(2)
        os.kill(proxy.pid, signal.SIGHUP)

        def settled() -> bool:
            pool = admin_get(admin, "/status")["pools"][0]
            return len(pool["backends"]) == 2 and all(b["seen_up"] for b in pool["backends"])

        await eventually(settled, 20, "the second replica")
        if rebalance:
            await eventually(
                lambda: (
                    sum(u.disconnects for u in users) >= CLIENTS // 2
                    and all(u.sio.connected and u.connects == u.disconnects + 1 for u in users)
                ),
                20,
                lambda: [(u.connects, u.disconnects) for u in users],
            )
        else:  # five ticks of the proxy's accounting with the second replica in place
            ticks = len(admin_get(admin, "/status")["pools"][0]["rebalance"]["history"])
            await eventually(
                lambda: (
                    len(admin_get(admin, "/status")["pools"][0]["rebalance"]["history"])
                    >= min(ticks + 5, 60)
                ),
                20,
                "five ticks",
            )
        names = [await u.call("whoami") for u in users]
        counts = [await u.call("count") for u in users]
        moved = [u.disconnects > 0 for u in users]
        await users[0].sio.call("say", {"room": "lobby", "n": 1}, timeout=10)
        await eventually(lambda: all(1 in u.messages for u in users), 10, "the room message")
        if rebalance:
            assert sum(moved) == CLIENTS // 2, moved
            for was_moved, name, count in zip(moved, names, counts, strict=True):
                # a moved client is on the new replica, and the app forgot its state
                assert (name, count) == (("app1", 1) if was_moved else ("app0", 2))
        else:
            assert not any(moved) and names == ["app0"] * CLIENTS and counts == [2] * CLIENTS
    finally:
        await asyncio.gather(*(u.sio.disconnect() for u in users), return_exceptions=True)
