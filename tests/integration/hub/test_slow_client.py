"""A client that stops reading: its backlog is bounded by --max-queue, it is disconnected with a
reason, and it gets back everything it missed by re-subscribing with ``since``. The twin runs the
same client against a hub whose bound is not reached: it stays connected."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import aiohttp
import pytest
import websockets

from tests.integration.hub.conftest import Peer, eventually, http_publish, start_hub_procs
from tests.support.procs import Procs

MESSAGES = 200
DATA = "x" * 50_000  # 10 MB in all: more than the loopback socket buffers hold


class RawClient:
    """An Engine.IO v4 / socket.io client on a plain websocket, so the test decides when it
    reads (python-socketio's client always reads)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.events: list[tuple[str, Any]] = []

    @classmethod
    async def connect(cls, url: str) -> RawClient:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: back-pressure
        host, port = url.removeprefix("http://").split(":")
        sock.connect((host, int(port)))
        ws = await websockets.connect(
            f"ws://{host}:{port}/socket.io/?EIO=4&transport=websocket",
            sock=sock,
            max_size=None,
            max_queue=1,
            compression=None,
        )
        client = cls(ws)
        assert (await ws.recv()).startswith("0")  # Engine.IO open
        await ws.send("40")
        assert (await ws.recv()).startswith("40")  # socket.io connect
        return client

    async def subscribe(self, channel: str) -> dict[str, Any]:
        await self.ws.send("420" + json.dumps(["subscribe", {"channel": channel}]))
        while True:
            frame = await asyncio.wait_for(self.ws.recv(), 10)
            if frame.startswith("430"):
                ack: dict[str, Any] = json.loads(frame[3:])[0]
                return ack
            self._record(frame)

    def _record(self, frame: str) -> None:
        if frame.startswith("42"):
            event, payload = json.loads(frame[2:])
            self.events.append((event, payload))

    async def read_until_closed(self, timeout: float = 30) -> None:
        async def read() -> None:
            try:
                async for frame in self.ws:
                    if frame == "1":  # Engine.IO close: the server is done with us
                        await self.ws.close()
                        return
                    if frame == "2":
                        await self.ws.send("3")  # answer the server's ping
                    self._record(frame)
            except websockets.ConnectionClosed:
                pass

        await asyncio.wait_for(read(), timeout)

    def offsets(self) -> list[int]:
        return [p["offset"] for e, p in self.events if e == "message"]


async def clients(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(f"{url}/healthz") as resp:
        count: int = (await resp.json())["clients"]
        return count


@pytest.mark.parametrize("bounded", [True, False], ids=["max-queue-20", "twin-unbounded"])
async def test_slow_client_is_disconnected_and_recovers_with_since(
    procs: Procs, bounded: bool
) -> None:
    extra = ["--max-queue", "20" if bounded else "100000"]
    url = start_hub_procs(procs, "memory", 1, *extra).urls[0]
    channel = "slow"
    async with aiohttp.ClientSession() as session:
        slow = await RawClient.connect(url)
        ack = await slow.subscribe(channel)
        assert ack["offset"] == 0
        # the client stops reading while the burst is published
        for _n in range(MESSAGES):
            status, _ = await http_publish(session, url, channel, DATA)
            assert status == 201
        if bounded:
            # disconnected by the hub (its backlog dropped), not left to grow without bound
            for _ in range(500):
                if await clients(session, url) == 0:
                    break
                await asyncio.sleep(0.02)
            assert await clients(session, url) == 0, "the slow client was not disconnected"
            await slow.read_until_closed()
            overflow = [p for e, p in slow.events if e == "overflow"]
            assert len(overflow) == 1 and "slow consumer" in overflow[0]["reason"]
            got = slow.offsets()
            assert got == list(range(1, len(got) + 1)), "in order, no gap before the cut"
            assert len(got) < MESSAGES
            # it comes back and recovers the rest with since: no gap, no duplicate
            peer = await Peer("back").connect(url)
            try:
                since = {"epoch": ack["epoch"], "offset": got[-1] if got else 0}
                back = await peer.subscribe(channel, since)
                assert back["recovered"] is True
                await eventually(
                    lambda: len(peer.offsets(channel)) == MESSAGES - len(got), what="recovery"
                )
                assert got + peer.offsets(channel) == list(range(1, MESSAGES + 1))
            finally:
                await peer.close()
        else:
            assert await clients(session, url) == 1  # never cut off
            reader = asyncio.create_task(slow.read_until_closed())
            await eventually(lambda: len(slow.offsets()) == MESSAGES, what="all messages")
            assert slow.offsets() == list(range(1, MESSAGES + 1))
            assert not [e for e, _ in slow.events if e == "overflow"]
            await slow.ws.close()
            await reader


@pytest.mark.parametrize("compression", [False, True], ids=["default-off", "twin-on"])
async def test_websocket_compression_is_off_unless_asked(compression: bool) -> None:
    """A client offering per-message deflate gets plain frames by default (less CPU per
    delivery); --ws-compression (the twin) negotiates it."""
    from tests.integration.hub.conftest import start_memory_hubs

    reps, runners = await start_memory_hubs(1, ws_compression=compression)
    try:
        host_port = reps.urls[0].removeprefix("http://")
        async with websockets.connect(
            f"ws://{host_port}/socket.io/?EIO=4&transport=websocket", compression="deflate"
        ) as ws:
            assert (await ws.recv()).startswith("0")
            negotiated = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
        assert ("permessage-deflate" in negotiated) is compression
    finally:
        for runner in runners:
            await runner.cleanup()
