"""The admin listener against client input: a closed dashboard stream, a bearer token of bytes
that are not UTF-8, a Host it was not given. Each is answered (or ended) without a traceback."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

from tests.integration.proxy.conftest import Proxy, start_proxy
from tests.support.procs import Procs


@pytest.fixture(scope="module")
def proxy(session_procs: Procs) -> Proxy:
    return start_proxy(
        session_procs, {"a": "http://127.0.0.1:9"}, "--no-health", "--log-level", "info"
    )


@pytest.fixture
def owner(session_procs: Procs) -> Procs:
    return session_procs  # who started the proxy, to read its output


def raw(proxy: Proxy, head: bytes) -> bytes:
    assert proxy.admin_port is not None
    with socket.create_connection(("127.0.0.1", proxy.admin_port), timeout=10) as s:
        s.sendall(head)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


async def frames(url: str, n: int) -> None:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        seen = 0
        async for line in resp.content:
            if line.startswith(b"data: "):
                seen += 1
                if seen == n:
                    return


async def test_a_closed_dashboard_stream_ends_without_a_traceback(
    owner: Procs, proxy: Proxy
) -> None:
    url = f"http://127.0.0.1:{proxy.admin_port}/events"
    await frames(url, 1)  # a dashboard that is closed after its first frame...
    # ...while another stays for three more ticks: the first one's next writes have happened
    await asyncio.wait_for(frames(url, 3), 30)
    log = owner.output(proxy.proc)  # type: ignore[arg-type]
    assert "Traceback" not in log and "Cannot write to closing transport" not in log, log


def test_a_bearer_token_that_is_not_utf8_is_401(owner: Procs, proxy: Proxy) -> None:
    answer = raw(
        proxy,
        b"POST /reload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer caf\xe9\xff\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 401"), answer
    assert "Traceback" not in owner.output(proxy.proc)  # type: ignore[arg-type]


def test_a_host_the_admin_was_not_given_is_421(proxy: Proxy) -> None:
    head = b"GET /status HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
    answer = raw(proxy, head % b"rebound.evil.example:9100")
    assert answer.startswith(b"HTTP/1.1 421"), answer
    assert b"admin-hosts" in answer
    # twin: the loopback address and localhost are answered
    assert raw(proxy, head % b"127.0.0.1").startswith(b"HTTP/1.1 200")
    assert raw(proxy, head % b"localhost:9100").startswith(b"HTTP/1.1 200")
