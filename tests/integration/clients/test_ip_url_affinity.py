"""limpet.client against an IP-address URL behind cookie affinity (the demo's own URL,
``http://127.0.0.1:8080``), on every transport. aiohttp's default cookie jar drops cookies of IP
hosts, so the affinity cookie was never sent back: the twin, the same socket.io connection on a
plain aiohttp jar, loses its session on the second replica."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import pytest
import socketio

from limpet.client import Client, Message
from tests.support.procs import Procs, free_port


@pytest.fixture(scope="module")
def proxy_url() -> Iterator[str]:
    """Two memory-broker hub replicas behind `limpet proxy --affinity cookie`, at an IP URL."""
    owner = Procs()
    try:
        backends = []
        for name in ("h1", "h2"):
            port = free_port()
            owner.limpet("hub", "--listen", f"127.0.0.1:{port}", "--name", name,
                         wait_for=("127.0.0.1", port))  # fmt: skip
            backends += ["--backend", f"{name}=http://127.0.0.1:{port}"]
        port = free_port()
        owner.limpet(
            "proxy", "--listen", f"127.0.0.1:{port}", "--affinity", "cookie", *backends,
            "--secret", "s", "--log-level", "warning", wait_for=("127.0.0.1", port),
        )  # fmt: skip
        yield f"http://127.0.0.1:{port}"
    finally:
        owner.close()


@pytest.mark.parametrize("transports", [None, ["polling"], ["websocket"]])
async def test_the_client_works_at_an_ip_url_on_every_transport(
    proxy_url: str, transports: list[str] | None
) -> None:
    client = Client(proxy_url, transports=transports, connect_timeout=10)
    got: list[int] = []
    async with client, client.subscribe("ip-url") as sub:
        for n in range(4):  # several polls, each of which must reach the same replica
            await sub.publish({"n": n})
        async with asyncio.timeout(15):
            async for item in sub:
                if isinstance(item, Message):
                    got.append(item.data["n"])
                    if len(got) == 4:
                        break
    assert got == [0, 1, 2, 3]


async def test_twin_a_plain_aiohttp_jar_loses_the_session(proxy_url: str) -> None:
    async with aiohttp.ClientSession() as http:  # the default jar: no cookie for 127.0.0.1
        sio = socketio.AsyncClient(reconnection=False, http_session=http)
        failed = False
        try:
            await sio.connect(proxy_url, transports=["polling"], wait_timeout=2)
            for _ in range(10):  # each poll is a new request: without the cookie, any replica
                await sio.call("subscribe", {"channel": "twin"}, timeout=2)
        except (socketio.exceptions.ConnectionError, socketio.exceptions.TimeoutError):
            failed = True
        finally:
            await sio.disconnect()
        assert failed, "the session survived without its affinity cookie"
        assert not http.cookie_jar.filter_cookies(proxy_url)  # the jar kept nothing
