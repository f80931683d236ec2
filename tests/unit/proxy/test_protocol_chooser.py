"""accept.ProtocolChooser: HTTP/2 or HTTP/1.1 per connection, by ALPN or by the h2c preface
(fed whole and byte by byte), with plain objects standing in for the transport."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from limpet.proxy.accept import H2_PREFACE, ProtocolChooser, choose


class Inner:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.data = b""
        self.client_ip = ""
        self.made = False

    def connection_made(self, transport: Any) -> None:
        self.made = True

    def data_received(self, data: bytes) -> None:
        self.data += data


class SslObject:
    def __init__(self, alpn: str | None) -> None:
        self.alpn = alpn

    def selected_alpn_protocol(self) -> str | None:
        return self.alpn


@dataclass
class Transport:
    ssl_object: SslObject | None = None
    protocol: Any = None
    closed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.ssl_object if name == "ssl_object" else default

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def close(self) -> None:
        self.closed = True


class Loop:
    def call_later(self, delay: float, callback: Any) -> Any:
        class Handle:
            def cancel(self) -> None:
                pass

        return Handle()


def chooser(sniff: bool = True) -> tuple[ProtocolChooser, Counter]:
    counter = Counter("c", "c", ["protocol"], registry=CollectorRegistry())
    metrics = type("M", (), {"protocol_connections": counter})()
    made = ProtocolChooser(
        lambda: Inner("http1"), lambda: Inner("h2"), sniff, Loop(), 10.0, metrics
    )  # type: ignore[arg-type]
    return made, counter


REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\n\r\n",  # shares the first byte with the preface
    b"PRI * HTTP/1.1\r\n\r\n",  # shares nine
]


@pytest.mark.parametrize("bytewise", [False, True])
def test_the_preface_is_http2(bytewise: bool) -> None:
    front, _ = chooser()
    transport = Transport()
    front.connection_made(transport)
    data = H2_PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    for piece in pieces:
        (transport.protocol or front).data_received(piece)
    assert transport.protocol.kind == "h2" and transport.protocol.data == data


@pytest.mark.parametrize("request_bytes", REQUESTS)
@pytest.mark.parametrize("bytewise", [False, True])
def test_twin_anything_else_is_http11(request_bytes: bytes, bytewise: bool) -> None:
    front, counter = chooser()
    transport = Transport()
    front.connection_made(transport)
    pieces = (
        [request_bytes[i : i + 1] for i in range(len(request_bytes))]
        if bytewise
        else [request_bytes]
    )
    for piece in pieces:
        (transport.protocol or front).data_received(piece)
    assert transport.protocol.kind == "http1" and transport.protocol.data == request_bytes
    assert counter.labels("http/1.1")._value.get() == 1


@pytest.mark.parametrize(("alpn", "kind"), [("h2", "h2"), ("http/1.1", "http1"), (None, "http1")])
def test_tls_chooses_by_alpn_before_any_byte(alpn: str | None, kind: str) -> None:
    front, _ = chooser(sniff=False)
    transport = Transport(ssl_object=SslObject(alpn))
    front.connection_made(transport)
    assert transport.protocol.kind == kind and transport.protocol.made


def test_a_proxy_protocol_address_is_passed_on() -> None:
    front, _ = chooser()
    transport = Transport()
    front.connection_made(transport)
    front.client_ip = "203.0.113.7"  # (what ProxyProtocolFront sets after connection_made)
    front.data_received(REQUESTS[0])
    assert transport.protocol.client_ip == "203.0.113.7"


def test_listeners_without_http2_get_the_plain_factory() -> None:
    def http1() -> Inner:
        return Inner("http1")

    ctx = type(
        "Ctx", (), {"loop": Loop(), "timeouts": type("T", (), {"header": 1.0}), "metrics": None}
    )
    plain = type("L", (), {"tls": (), "h2": True, "h2c": False})
    assert choose(http1, http1, plain, ctx) is http1
    tls_off = type("L", (), {"tls": ("pair",), "h2": False, "h2c": False})
    assert choose(http1, http1, tls_off, ctx) is http1
    h2c = type("L", (), {"tls": (), "h2": True, "h2c": True})
    assert choose(http1, http1, h2c, ctx) is not http1
