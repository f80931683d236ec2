"""The hub's listener bounds what a client can make it hold and answers aiohttp's own errors in
the hub's shape: a first request head that does not arrive within --head-timeout gets 408 and
the connection is closed (twin: a hub with a long timeout still holds it), a header over 8 190
bytes gets a JSON 400 with no traceback, and "Invalid session" is logged once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.integration.hub.conftest import start_hub_procs
from tests.support.procs import Procs

TRICKLERS = 200


@pytest.fixture(scope="module")
def hubs() -> Any:
    procs = Procs()
    try:
        short = start_hub_procs(procs, "memory", 1, "--head-timeout", "1")
        long = start_hub_procs(procs, "memory", 1, "--head-timeout", "60")
        yield procs, short, long
    finally:
        procs.close()


async def trickle(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: h\r\nX-Slow: ")  # and never the rest
    await writer.drain()
    return reader, writer


@pytest.mark.parametrize("which", ["short", "long"], ids=["head-timeout", "twin-long-timeout"])
async def test_connections_trickling_a_head_are_closed_after_the_head_timeout(
    hubs: Any, which: str
) -> None:
    procs, short, long = hubs
    (url,) = (short if which == "short" else long).urls
    conns = [await trickle(url) for _ in range(TRICKLERS)]
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as resp:
            assert resp.status == 200  # the hub still serves meanwhile
        if which == "short":
            for reader, _ in conns:
                answer = await asyncio.wait_for(reader.read(), 10)
                assert answer.startswith(b"HTTP/1.1 408 "), answer[:60]
                assert answer.endswith(b'{"error": "request head timeout"}')
        else:
            # the twin: still held once the short timeout has passed twice over
            reader, _ = conns[0]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(1), 2.0)
    finally:
        for _, writer in conns:
            writer.close()
    assert "Traceback" not in procs.output((short if which == "short" else long).procs[0])


async def test_a_header_over_8190_bytes_is_a_json_400_without_a_traceback(hubs: Any) -> None:
    procs, short, _ = hubs
    (url,) = short.urls
    big = {"X-Big": "a" * 9000}
    async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz", headers=big) as resp:
        assert resp.status == 400
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert "8190" in body["error"], body
    assert "Traceback" not in procs.output(short.procs[0])


async def test_invalid_session_is_logged_once(hubs: Any) -> None:
    procs, _, long = hubs
    (url,) = long.urls
    async with aiohttp.ClientSession() as http:
        for sid in ("nope", "nope2"):
            async with http.get(f"{url}/socket.io/?EIO=4&transport=polling&sid={sid}") as resp:
                assert resp.status == 400
                assert json.loads(await resp.text()) == f"Invalid session {sid}"
    log = procs.output(long.procs[0])
    assert log.count("Invalid session nope (") == 1, log
    assert "Invalid session nope2" not in log  # further ones at INFO, below the hub's level
