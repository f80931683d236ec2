"""HTTP/1.1 machinery through a real proxy: WebSocket, streamed bodies, 100-continue,
pipelining, forwarding headers. Byte-exact where the wire matters."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.integration.proxy.conftest import Client, raw_exchange, start_proxy
from tests.support.procs import Procs
from tests.support.rawhttp import recv_head


@pytest.fixture
def proxy(procs: Procs, three: dict[str, str]):
    return start_proxy(procs, three)


async def test_websocket_echo_through_the_proxy(proxy) -> None:
    websockets = pytest.importorskip("websockets")
    url = proxy.url.replace("http://", "ws://") + "/ws"
    names = set()
    for _ in range(3):
        async with websockets.connect(url) as ws:
            for i in range(20):
                await ws.send(f"m{i}")
                reply = await asyncio.wait_for(ws.recv(), 5)
                name, _, text = reply.partition(": ")
                assert text == f"m{i}"
                names.add(name)
            big = "x" * 1_000_000  # larger than any transport buffer: back-pressure both ways
            await ws.send(big)
            assert (await asyncio.wait_for(ws.recv(), 10)).endswith(big)
    assert names <= {"alpha", "beta", "gamma"}
    status = proxy.status()
    assert status["downstream_connections"] <= 1


async def test_websocket_stays_on_the_cookie_pin(proxy) -> None:
    websockets = pytest.importorskip("websockets")
    client = Client(proxy.url)
    pinned = client.backend()
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    url = proxy.url.replace("http://", "ws://") + "/ws"
    for _ in range(3):
        async with websockets.connect(url, additional_headers={"Cookie": cookie}) as ws:
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), 5) == f"{pinned}: hi"


def body_bytes(response: bytes) -> int:
    for line in response.decode(errors="replace").splitlines():
        if line.startswith("body-bytes: "):
            return int(line.split(": ")[1])
    raise AssertionError(response[:500])


def test_big_chunked_upload_is_streamed(proxy) -> None:
    size = 0
    chunk = b"y" * 65536
    with socket.create_connection((proxy.host, proxy.port), timeout=30) as s:
        s.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n"
        )
        for _ in range(400):  # 25 MiB in chunks
            s.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            size += len(chunk)
        s.sendall(b"0\r\n\r\n")
        data = b""
        while part := s.recv(65536):
            data += part
    assert data.startswith(b"HTTP/1.1 200 ")
    assert body_bytes(data) == size


def test_big_content_length_upload(proxy) -> None:
    size = 16 * 1024 * 1024
    with socket.create_connection((proxy.host, proxy.port), timeout=30) as s:
        s.sendall(
            b"PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            % size
        )
        block = b"z" * (1 << 20)
        for _ in range(16):
            s.sendall(block)
        data = b""
        while part := s.recv(65536):
            data += part
    assert body_bytes(data) == size


def test_expect_100_continue(proxy) -> None:
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as s:
        s.sendall(
            b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\n\r\n"
        )
        interim = s.recv(1024)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hello")
        data = b""
        while part := s.recv(65536):
            data += part
    assert data.startswith(b"HTTP/1.1 200 ")
    assert body_bytes(data) == 5
    assert b"Expect:" not in data  # the expectation is answered here, not forwarded


def test_pipelined_requests_are_answered_in_order(proxy) -> None:
    paths = [f"/p{i}" for i in range(8)]
    requests = b"".join(b"GET %b HTTP/1.1\r\nHost: x\r\n\r\n" % p.encode() for p in paths)
    requests += b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    data = raw_exchange(proxy.port, requests)
    assert data.endswith(b"<EOF>")
    order = [line.split()[1] for line in data.decode().splitlines() if line.startswith("GET /")]
    assert order == [*paths, "/last"]
    assert data.count(b"HTTP/1.1 200 OK") == 9


def test_forwarding_headers_and_hop_by_hop(proxy) -> None:
    request = (
        b"GET /f HTTP/1.1\r\nHost: example.test\r\nConnection: close, X-Private\r\n"
        b"X-Private: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
        b"X-Forwarded-For: 203.0.113.9\r\nX-Request-Id: given-id\r\n\r\n"
    )
    data = raw_exchange(proxy.port, request).decode()
    head, _, body = data.partition("\r\n\r\n")
    seen = body.lower()
    assert "x-private" not in seen and "keep-alive: timeout" not in seen and "te: " not in seen
    # untrusted by default: the client's own claims are replaced, not extended
    assert "x-forwarded-for: 127.0.0.1\n" in seen
    assert "x-forwarded-host: example.test" in seen
    assert "x-forwarded-proto: http" in seen
    assert "given-id" not in seen and "x-request-id: " in seen
    assert "via: 1.1 limpet" in seen
    assert "Via: 1.1 limpet" in head


def test_trusted_forwarding_headers_are_extended(procs: Procs, three: dict[str, str]) -> None:
    proxy = start_proxy(procs, three, "--trust-forwarded", admin=False)
    request = (
        b"GET /f HTTP/1.1\r\nHost: h\r\nConnection: close\r\n"
        b"X-Forwarded-For: 203.0.113.9\r\nX-Request-Id: given-id\r\n\r\n"
    )
    body = raw_exchange(proxy.port, request).decode().lower()
    assert "x-forwarded-for: 203.0.113.9, 127.0.0.1" in body
    assert "x-request-id: given-id" in body


def test_head_and_http10(proxy) -> None:
    data = raw_exchange(proxy.port, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and rest == b"<EOF>"
    data = raw_exchange(proxy.port, b"GET /old HTTP/1.0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200") and b"GET /old HTTP/1.0" not in data
    assert data.endswith(b"<EOF>")


async def test_idle_websocket_tunnel_is_closed(procs: Procs, three: dict[str, str]) -> None:
    websockets = pytest.importorskip("websockets")
    config = procs.tmp / "idle.yaml"
    config.write_text("timeouts: {tunnel-idle: 1}\n")
    proxy = start_proxy(procs, three, "--config", str(config), admin=False)
    url = proxy.url.replace("http://", "ws://") + "/ws"
    async with websockets.connect(url, ping_interval=None) as ws:
        await ws.send("hi")
        assert (await asyncio.wait_for(ws.recv(), 5)).endswith(": hi")
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)  # nothing flows: the proxy ends the tunnel


async def test_twin_active_websocket_tunnel_stays_open(procs: Procs, three: dict[str, str]) -> None:
    websockets = pytest.importorskip("websockets")
    config = procs.tmp / "idle.yaml"
    config.write_text("timeouts: {tunnel-idle: 1}\n")
    proxy = start_proxy(procs, three, "--config", str(config), admin=False)
    url = proxy.url.replace("http://", "ws://") + "/ws"
    async with websockets.connect(url, ping_interval=None) as ws:
        for i in range(8):  # 8 x 0.4 s: longer than the idle timeout, but never idle that long
            await ws.send(f"m{i}")
            assert (await asyncio.wait_for(ws.recv(), 5)).endswith(f": m{i}")
            await asyncio.sleep(0.4)


def test_pipelined_requests_with_bodies(proxy) -> None:
    requests = (
        b"POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        b"POST /two HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        b"GET /three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    data = raw_exchange(proxy.port, requests).decode()
    lines = data.splitlines()
    order = [line.split()[1] for line in lines if line.startswith(("GET /", "POST /"))]
    assert order == ["/one", "/two", "/three"]
    assert [line for line in lines if line.startswith("body-bytes")] == [
        "body-bytes: 5",
        "body-bytes: 3",
        "body-bytes: 0",
    ]


def test_absolute_form_and_asterisk_targets(proxy) -> None:
    data = raw_exchange(
        proxy.port,
        b"GET http://example.test/abs?q=1 HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n",
    ).decode()
    assert data.startswith("HTTP/1.1 200 ")
    assert "GET /abs?q=1 HTTP/1.1" in data and "Host: example.test" in data
    data = raw_exchange(
        proxy.port, b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ).decode()
    assert "Via: 1.1 limpet" in data and "no route" not in data  # routed, answered upstream


def ws_handshake(port: int, cookie: str | None = None) -> tuple[str, str | None]:
    """A raw WebSocket handshake and one echoed text frame: (backend name, Set-Cookie or None)."""
    import base64
    import os

    key = base64.b64encode(os.urandom(16)).decode()
    head = (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    )
    if cookie:
        head += f"Cookie: {cookie}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head.encode() + b"\r\n")
        resp_head, rest = recv_head(s)
        assert resp_head, rest
        lines = resp_head.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 101"), lines
        set_cookie = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "set-cookie":
                set_cookie = value.strip()
        mask = os.urandom(4)
        payload = b"hi"
        s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask
                  + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))  # fmt: skip
        while len(rest) < 2 or len(rest) < 2 + (rest[1] & 0x7F):
            chunk = s.recv(65536)
            assert chunk, rest
            rest += chunk
        text = rest[2 : 2 + (rest[1] & 0x7F)].decode()
        s.sendall(bytes([0x88, 0x80]) + mask)  # close
    name, _, echoed = text.partition(": ")
    assert echoed == "hi", text
    return name, set_cookie


def test_websocket_handshake_gets_the_affinity_cookie(procs: Procs, three: dict[str, str]) -> None:
    """No page load first: the 101 answer carries the pin, and reconnects that send it stick."""
    proxy = start_proxy(procs, three, "--affinity", "cookie")
    first, set_cookie = ws_handshake(proxy.port)
    assert set_cookie is not None and set_cookie.startswith("limpet="), set_cookie
    cookie = set_cookie.split(";", 1)[0]
    landed = [ws_handshake(proxy.port, cookie) for _ in range(8)]
    assert {name for name, _ in landed} == {first}
    assert all(sc is None for _, sc in landed)  # a valid pin needs no new cookie


def test_twin_websocket_reconnects_without_the_cookie_spread(
    procs: Procs, three: dict[str, str]
) -> None:
    proxy = start_proxy(procs, three, "--affinity", "cookie")
    names = {ws_handshake(proxy.port)[0] for _ in range(9)}
    assert len(names) > 1, names


def test_a_websocket_client_fin_is_passed_on_and_the_answer_still_arrives(proxy) -> None:
    """The client sends a frame and half-closes at once: the tunnel passes the FIN to the
    backend instead of closing, so the backend's echo still reaches the client, then the
    close (before the shared Tunnel an upgrade ended at the client's FIN: the echo was lost
    whenever the FIN reached the proxy first)."""
    key = b"dGhlIHNhbXBsZSBub25jZQ=="
    mask = b"\x01\x02\x03\x04"
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"hi"))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n"
        )
        head, rest = recv_head(sock)
        assert head.startswith(b"HTTP/1.1 101 ")
        sock.sendall(b"\x81\x82" + mask + payload)
        sock.shutdown(socket.SHUT_WR)
        data = rest
        while chunk := sock.recv(65536):
            data += chunk
    assert data[:1] == b"\x81" and data[2 : 2 + data[1]].endswith(b": hi")
