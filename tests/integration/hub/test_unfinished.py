"""The hub's budget for unfinished WebSocket messages, on a real hub process: raw clients each
start a 1 MiB message (a first fragment without FIN) and never finish it. Past
``--max-unfinished`` the hub closes the connection that would pass it with 1013, counts it in
/healthz and logs it once without a traceback, while a normal socket.io client still connects
and gets its answers. Twin: a hub with a large budget holds the same connections."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from tests.integration.hub.conftest import Peer, start_hub_procs
from tests.support.procs import Procs
from tests.support.wsframes import TEXT, client_frame, close_code, open_websocket, read_frame

MIB = 1 << 20
CLIENTS = 5
#: room for 2 of the clients' unfinished messages (and a part of a third)
BUDGET = 5 * MIB // 2
WS = "/socket.io/?EIO=4&transport=websocket"


@pytest.fixture(scope="module")
def hubs() -> Any:
    procs = Procs()
    try:
        tight = start_hub_procs(procs, "memory", 1, "--max-unfinished", str(BUDGET))
        large = start_hub_procs(procs, "memory", 1, "--max-unfinished", str(64 * MIB))
        yield procs, tight, large
    finally:
        procs.close()


async def unfinished(http: aiohttp.ClientSession, url: str) -> dict[str, int]:
    async with http.get(f"{url}/healthz") as resp:
        return dict((await resp.json())["unfinished"])


async def until(http: aiohttp.ClientSession, url: str, what: str, check: Any) -> dict[str, int]:
    """/healthz's ``unfinished`` once ``check`` holds for it (bounded)."""
    deadline = time.monotonic() + 10
    while not check(stats := await unfinished(http, url)):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {stats}")
        await asyncio.sleep(0.02)
    return stats


async def start_message(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A websocket whose 1 MiB socket.io message gets a first fragment and nothing more."""
    reader, writer = await open_websocket(url, WS)
    opcode, payload = await read_frame(reader)  # Engine.IO's open packet: the hub serves it
    assert (opcode, payload[:1]) == (TEXT, b"0"), payload
    writer.write(client_frame(TEXT, b"4" + b"x" * (MIB - 1), fin=False))
    await writer.drain()
    return reader, writer


@pytest.mark.parametrize("which", ["tight", "large"], ids=["budget", "twin-large-budget"])
async def test_unfinished_messages_past_the_budget_are_closed_with_1013(
    hubs: Any, which: str
) -> None:
    procs, tight, large = hubs
    (url,) = (tight if which == "tight" else large).urls
    conns = []
    try:
        async with aiohttp.ClientSession() as http:
            for n in range(1, CLIENTS + 1):
                conns.append(await start_message(url))
                if which == "large" or n <= 2:
                    await until(http, url, f"{n} MiB held", lambda s, n=n: s["held"] == n * MIB)
                    continue
                # past the budget: this one is closed with 1013, and what it held is given back
                code, reason = await asyncio.wait_for(close_code(conns[-1][0]), 10)
                assert code == 1013
                assert "budget" in reason
                stats = await until(
                    http, url, "the refused one released", lambda s: s["connections"] == 2
                )
                assert stats["held"] == 2 * MIB
                assert stats["refused"] >= n - 2
            stats = await unfinished(http, url)
            if which == "tight":
                assert stats == {"limit": BUDGET, "held": 2 * MIB, "connections": 2, "refused": 3}
            else:
                assert stats["held"] == CLIENTS * MIB and stats["refused"] == 0
            # a normal client is served meanwhile: connects, subscribes, publishes
            peer = await Peer("normal").connect(url)
            try:
                assert (await peer.subscribe("c"))["channel"] == "c"
                assert (await peer.call("publish", {"channel": "c", "data": "x"}))["offset"] >= 1
            finally:
                await peer.close()
    finally:
        for _, writer in conns:
            writer.close()
    log = procs.output((tight if which == "tight" else large).procs[0])
    assert "Traceback" not in log, log[-3000:]
    refusals = [line for line in log.splitlines() if "--max-unfinished" in line]
    assert len(refusals) == (3 if which == "tight" else 0), refusals
