"""Polling sessions and ``POST /rebalance``: python-socketio clients on the polling transport
through `limpet proxy --affinity engineio` to one `limpet hub`; a SIGHUP adds a second replica.

- the twin first: with ``rebalance`` off nothing moves by itself, the new replica stays empty;
- ``POST /rebalance`` (bearer token) moves half of them now: each moved session's next poll is
  answered ``400 Session ID unknown``, the client handshakes again and lands on the new replica
  with a fresh sid; ``limpet_rebalance_moves_total{reason="admin"}`` counts them;
- an unknown pool is a 404, not a traceback.
"""

from __future__ import annotations

import asyncio
import urllib.request
import uuid

import socketio

from tests.conftest import BrokerServer
from tests.support.admin import admin_post
from tests.support.procs import Procs
from tests.support.scaling import TOKEN, Rig, eventually

CLIENTS = 8


def metrics(rig: Rig) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{rig.admin_port}/metrics", timeout=5) as r:
        return r.read().decode()


async def test_polling_sessions_move_on_an_admin_rebalance(
    procs: Procs, redis_server: BrokerServer
) -> None:
    rig = await asyncio.to_thread(
        Rig, procs, redis_server.url, rebalance=False, replicas=1, hubs=2, max_moving=1.0
    )
    channel = f"poll-{uuid.uuid4().hex[:8]}"
    clients = [socketio.AsyncClient(reconnection_delay=0.1) for _ in range(CLIENTS)]
    for sio in clients:

        async def subscribe(sio: socketio.AsyncClient = sio) -> None:
            await sio.emit("subscribe", {"channel": channel})

        sio.on("connect", subscribe)
    stop = asyncio.Event()

    async def publish() -> None:  # keeps the long polls short: every poll returns a message
        n = 0
        while not stop.is_set():
            await asyncio.to_thread(rig.publish, channel, n)
            n += 1
            await asyncio.sleep(0.1)

    publisher = asyncio.create_task(publish())
    try:
        for sio in clients:
            await sio.connect(rig.url, transports=["polling"], wait_timeout=10)
        sids = [sio.get_sid() for sio in clients]
        assert (await asyncio.to_thread(rig.clients_per_hub))[:2] == [CLIENTS, 0]
        rig.scale_to(2)
        await eventually(
            lambda: (
                len(rig.status()["backends"]) == 2
                and all(b["seen_up"] for b in rig.status()["backends"])
            ),
            20,
            lambda: rig.status(),
        )
        # the twin: rebalance off, three ticks later the new replica is still empty
        ticks = len(rig.status()["rebalance"]["history"])
        await eventually(
            lambda: len(rig.status()["rebalance"]["history"]) >= min(ticks + 3, 60), 20, "ticks"
        )
        assert (await asyncio.to_thread(rig.clients_per_hub))[1] == 0
        assert rig.status()["rebalance"]["blocked"] == "disabled"

        code, body = await asyncio.to_thread(
            admin_post, rig.admin_port, "/rebalance?pool=hubs", TOKEN
        )
        assert code == 200, body
        assert body["pools"]["hubs"]["moved"] == CLIENTS // 2, body
        await eventually(
            lambda: (
                rig.clients_per_hub()[1] == CLIENTS // 2 and all(sio.connected for sio in clients)
            ),
            30,
            lambda: (rig.clients_per_hub(), [sio.connected for sio in clients]),
        )
        changed = [old != sio.get_sid() for old, sio in zip(sids, clients, strict=True)]
        assert sum(changed) == CLIENTS // 2, changed
        assert f'limpet_rebalance_moves_total{{pool="hubs",reason="admin"}} {CLIENTS // 2}.0' in (
            await asyncio.to_thread(metrics, rig)
        )
        assert 'limpet_backend_sessions{backend="h1",pool="hubs"}' in await asyncio.to_thread(
            metrics, rig
        )
        code, body = await asyncio.to_thread(
            admin_post, rig.admin_port, "/rebalance?pool=nope", TOKEN
        )
        assert code == 404 and "nope" in body["error"]
    finally:
        stop.set()
        await asyncio.gather(publisher, return_exceptions=True)
        # abort: a clean polling disconnect waits for the long poll in flight (up to the ping
        # interval); the processes go with the test anyway
        await asyncio.gather(*(sio.eio.disconnect(abort=True) for sio in clients))
