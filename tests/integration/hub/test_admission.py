"""Admission control on a real hub process: past ``--max-handshakes`` handshakes in flight a
polling handshake gets 503 + Retry-After and a WebSocket close 1013, counted in /healthz; a
connected client gives its place back; limpet.client waits as told and gets in. Twins: the same
hub without a limit admits everything. And clients that go away mid-handshake, on either
transport, leave no traceback in the hub's log."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import aiohttp
import pytest

from limpet.client import Client
from tests.integration.hub.conftest import Peer, start_hub_procs
from tests.support.procs import Procs

HANDSHAKE = "/socket.io/?EIO=4&transport=polling"


@pytest.fixture(scope="module")
def hubs() -> Any:
    """A hub admitting 2 handshakes in flight (held up to 3 s), and its twin without a limit."""
    procs = Procs()
    try:
        limited = start_hub_procs(
            procs, "memory", 1, "--max-handshakes", "2", "--admission-hold", "3"
        )
        open_ = start_hub_procs(procs, "memory", 1, "--max-handshakes", "0")
        yield procs, limited, open_
    finally:
        procs.close()


async def health(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(f"{url}/healthz") as resp:
        return dict(await resp.json())


async def fill(http: aiohttp.ClientSession, url: str, n: int, *, free: bool = True) -> None:
    """``n`` polling handshakes that never go further: each holds its place until the hold.
    ``free``: first wait until the places of earlier tests came back."""
    if free:
        await eventually_free(http, url)
    for _ in range(n):
        async with http.get(url + HANDSHAKE) as resp:
            assert resp.status == 200


async def test_past_the_limit_polling_gets_503_and_websocket_close_1013(hubs: Any) -> None:
    procs, limited, _ = hubs
    (url,) = limited.urls
    async with aiohttp.ClientSession() as http:
        await fill(http, url, 2)
        async with http.get(url + HANDSHAKE, headers={"Origin": "http://app"}) as resp:
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "1"
            assert resp.headers["Access-Control-Allow-Origin"] == "http://app"
            assert "Retry-After" in resp.headers["Access-Control-Expose-Headers"]
            body = await resp.json()
        assert body == {"error": "try again later: retry after 1 s", "retry_after": 1}
        ws = await http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket")
        msg = await ws.receive(timeout=10)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert (msg.data, msg.extra) == (1013, "try again later: retry after 1 s")
        await ws.close()
        admission = (await health(http, url))["admission"]
        assert admission["refused"] >= 2 and admission["in_flight"] == 2
        # requests of sessions already in (a sid) and the HTTP API are never refused
        async with http.get(f"{url}/api/channels/c/messages") as resp:
            assert resp.status == 200
    assert "Traceback" not in procs.output(limited.procs[0])


async def test_twin_without_a_limit_every_handshake_is_admitted(hubs: Any) -> None:
    _, _, open_ = hubs
    (url,) = open_.urls
    async with aiohttp.ClientSession() as http:
        await fill(http, url, 20, free=False)
        assert (await health(http, url))["admission"]["refused"] == 0


async def eventually_free(http: aiohttp.ClientSession, url: str) -> None:
    """Wait until the places of earlier tests came back (their hold ran out)."""

    async def free() -> bool:
        return (await health(http, url))["admission"]["in_flight"] == 0

    for _ in range(200):
        if await free():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("handshakes of earlier tests still in flight")


async def test_a_connected_client_gives_its_place_back(hubs: Any) -> None:
    _, limited, _ = hubs
    (url,) = limited.urls
    async with aiohttp.ClientSession() as http:
        await fill(http, url, 1)
        peers = []
        for n in range(3):  # one place left, and each connected client gives it back
            peer = await Peer(f"p{n}").connect(url)
            assert (await peer.subscribe("admitted"))["channel"] == "admitted"
            peers.append(peer)
        assert (await health(http, url))["admission"]["in_flight"] == 1
        for peer in peers:
            await peer.close()


async def test_limpet_client_waits_as_told_and_gets_in(hubs: Any) -> None:
    _, limited, _ = hubs
    (url,) = limited.urls
    async with aiohttp.ClientSession() as http:
        await fill(http, url, 2)  # full for up to 3 s
    errors: list[Any] = []

    async def subscribed() -> None:
        client = Client(url, transports=["polling"], reconnection_delay=0.05)
        client.on("connect_error", errors.append)
        async with client, client.subscribe("waited"):
            pass  # entered: subscribed

    await asyncio.wait_for(subscribed(), 20)
    assert errors, "the hub was full: the first attempts were refused"
    assert all(e["data"] == {"error": "try again later: retry after 1 s", "retry_after": 1}
               for e in errors)  # fmt: skip
    # told 1 s each time, with at most 3 s to wait: a handful of attempts, not one per 50 ms
    assert len(errors) <= 4, errors


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def test_clients_gone_mid_handshake_leave_no_traceback(hubs: Any) -> None:
    """Handshakes (polling, websocket, and the socket.io connect of a polling session) whose
    client resets the connection right after sending them: the hub cannot answer and says
    nothing about it."""
    procs, _, open_ = hubs
    (url,) = open_.urls
    host, port = url.removeprefix("http://").split(":")
    async with aiohttp.ClientSession() as http, http.get(url + HANDSHAKE) as resp:
        sid = (await resp.text()).split('"sid":"')[1].split('"')[0]
    requests = [
        f"GET {HANDSHAKE} HTTP/1.1\r\nHost: h\r\n\r\n".encode(),
        (
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: h\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        ),
        f"POST {HANDSHAKE}&sid={sid} HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n40".encode(),
        f"GET {HANDSHAKE}&sid={sid} HTTP/1.1\r\nHost: h\r\n\r\n".encode(),
    ]
    loop = asyncio.get_running_loop()
    for _ in range(50):
        for request in requests:
            sock = socket.create_connection((host, int(port)))
            sock.setblocking(False)
            await loop.sock_sendall(sock, request)
            _reset(sock)
    async with aiohttp.ClientSession() as http:
        assert (await health(http, url))["name"]  # still serving
    log = procs.output(open_.procs[0])
    assert "Traceback" not in log, log[-3000:]
    assert "Cannot write to closing transport" not in log
