"""The proxy's engineio glue without sockets: the 400 it writes, URLs, the tunnel's first frame."""

from __future__ import annotations

import json

import httptools

from limpet.affinity.base import RequestFacts
from limpet.affinity.engineio import EngineIOPolicy, encode_frame_header
from limpet.pool.model import BackendView, PoolSnapshot
from limpet.proxy.engineio import EngineIOExchange, _RewritingPeer, session_unknown

POOL = PoolSnapshot("p", (BackendView("a", "127.0.0.1:1"), BackendView("b", "127.0.0.1:2")))


class Response:
    """httptools callbacks collecting one response."""

    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.body = b""
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done = True


def parse(raw: bytes) -> tuple[int, Response]:
    resp = Response()
    parser = httptools.HttpResponseParser(resp)
    parser.feed_data(raw)
    return parser.get_status_code(), resp


def test_session_unknown_is_a_complete_json_400() -> None:
    status, resp = parse(session_unknown(None))
    assert status == 400 and resp.done
    assert resp.headers[b"content-type"] == b"application/json"
    assert json.loads(resp.body) == {"code": 1, "message": "Session ID unknown"}
    assert b"access-control-allow-origin" not in resp.headers


def test_session_unknown_echoes_the_origin_for_cross_origin_clients() -> None:
    _, resp = parse(session_unknown(b"https://app.example"))
    assert resp.headers[b"access-control-allow-origin"] == b"https://app.example"
    assert resp.headers[b"access-control-allow-credentials"] == b"true"


def exchange_for(query: str) -> tuple[EngineIOPolicy, EngineIOExchange]:
    policy = EngineIOPolicy(secret=b"k", pool_name="p")
    decision = policy.decide(RequestFacts("127.0.0.1", "/socket.io/", query), POOL)
    assert decision.pick.backend is not None
    return policy, EngineIOExchange(decision, policy, decision.pick.backend.id)


def test_upstream_url_carries_the_backend_sid() -> None:
    policy = EngineIOPolicy(secret=b"k", pool_name="p")
    token = policy.mint("SID123", "b")
    query = f"EIO=4&transport=polling&t=x&sid={token}"
    _, eio = exchange_for(query)
    assert eio.backend == "b"
    url = f"/socket.io/?{query}".encode()
    assert eio.url(url) == b"/socket.io/?EIO=4&transport=polling&t=x&sid=SID123"
    assert eio.strip_headers == frozenset()


def test_handshake_url_is_untouched_and_compression_is_not_offered() -> None:
    _, eio = exchange_for("EIO=4&transport=polling")
    assert eio.url(b"/socket.io/?EIO=4&transport=polling") == b"/socket.io/?EIO=4&transport=polling"
    assert eio.strip_headers == frozenset({b"accept-encoding"})
    _, ws = exchange_for("EIO=4&transport=websocket")
    assert ws.strip_headers == frozenset({b"sec-websocket-extensions"})


class FakeTransport:
    """Records writes; the downstream side of a tunnel as the upstream connection sees it."""

    def __init__(self) -> None:
        self.written = b""
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written += data

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        pass


class FakeDown:
    def __init__(self) -> None:
        self.transport = FakeTransport()
        self.activity = 0

    def peer_lost(self) -> None:
        pass

    def peer_eof(self) -> None:
        pass

    def tunnel_activity(self) -> None:
        self.activity += 1


class FakeConn:
    tunnel_peer: object = None


def test_tunnel_rewrites_the_first_frame_then_steps_aside() -> None:
    policy, eio = exchange_for("EIO=4&transport=websocket")
    down, conn = FakeDown(), FakeConn()
    peer = _RewritingPeer(down, conn, eio._mint, eio.backend)  # type: ignore[arg-type]
    conn.tunnel_peer = peer
    packet = b'0{"sid":"SID9","upgrades":[],"pingInterval":25000}'
    stream = encode_frame_header(0x1, len(packet)) + packet + encode_frame_header(0x1, 2) + b"40"
    for i in range(len(stream)):  # the upstream delivers it byte by byte
        target = conn.tunnel_peer
        assert target is not None
        target.transport.write(stream[i : i + 1])  # type: ignore[attr-defined]
    assert conn.tunnel_peer is down  # plain tunnel after the open frame
    written = down.transport.written
    assert written.endswith(encode_frame_header(0x1, 2) + b"40")
    length = written[1]
    opened = json.loads(written[3 : 2 + length])
    assert opened["sid"] == policy.mint("SID9", eio.backend)


def test_tunnel_aborts_on_a_frame_it_cannot_rewrite() -> None:
    _, eio = exchange_for("EIO=4&transport=websocket")
    down, conn = FakeDown(), FakeConn()
    peer = _RewritingPeer(down, conn, eio._mint, eio.backend)  # type: ignore[arg-type]
    peer.transport.write(encode_frame_header(0x2, 3) + b"abc")
    assert down.transport.aborted and down.transport.written == b""
