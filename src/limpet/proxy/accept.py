"""I/O: PROXY protocol on a listener, as a wrapper around the protocol factory.

``ProxyProtocolFront`` owns a new connection only until the PROXY header is read (from a
trusted balancer) or known absent (from anyone else); it then hands the transport to the real
protocol (``transport.set_protocol``), sets that protocol's ``client_ip`` to the address the
balancer reported, and passes on the bytes after the header. From then on reads go straight to
the real protocol: no cost on the hot path. With ``send`` (tcp listeners), a header of that
version is queued ahead of the client's bytes to the backend.

Trust: a header is only believed from ``trusted`` source ranges (the balancer's), where it is
required (HAProxy's ``accept-proxy``); from any other peer a connection that starts with a
header is refused (a client must not choose its own address), and one without is served as is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from limpet.proxy import proxyproto

log = logging.getLogger("limpet.proxy")

HEADER_TIMEOUT = 5.0  # a balancer sends the header at once; a silent peer is dropped


class ProxyProtocolFront(asyncio.Protocol):
    def __init__(
        self,
        inner: Callable[[], Any],
        trusted: tuple[Any, ...],
        send: int | None,
        loop: asyncio.AbstractEventLoop,
        accept: bool = True,
    ) -> None:
        self.accept = accept  # False: only sending headers on, nothing to read first
        self.inner_factory = inner
        self.trusted = trusted
        self.send = send
        self.loop = loop
        self.transport: Any = None
        self.buffer = b""
        self.from_balancer = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if not self.accept:
            return self._hand_over(None, 0)
        peer = transport.get_extra_info("peername")
        self.from_balancer = bool(peer) and proxyproto.trusted(peer[0], self.trusted)
        self.timer = self.loop.call_later(HEADER_TIMEOUT, self._timeout)

    def _timeout(self) -> None:
        if self.transport is not None:
            log.info("PROXY protocol: no header within %ss; closing", HEADER_TIMEOUT)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            header = proxyproto.parse(self.buffer)
        except proxyproto.ProxyProtocolError as exc:
            if self.from_balancer:
                return self._refuse(f"from a trusted balancer without a valid header: {exc}")
            return self._hand_over(None, 0)  # a direct client: served with its own address
        if header is None:
            return  # more bytes needed (bounded: parse refuses headers past their limits)
        if not self.from_balancer:
            return self._refuse("a PROXY header from an untrusted address")
        self._hand_over(header, header.length)

    def _refuse(self, why: str) -> None:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        log.warning("PROXY protocol: closing %s: %s", peer, why)
        self._cancel()
        self.transport.close()

    def _hand_over(self, header: proxyproto.Header | None, used: int) -> None:
        self._cancel()
        transport, rest = self.transport, self.buffer[used:]
        self.transport, self.buffer = None, b""
        inner = self.inner_factory()
        transport.set_protocol(inner)
        inner.connection_made(transport)
        source = header.source if header is not None else None
        if source is not None and hasattr(inner, "client_ip"):
            inner.client_ip = source[0]  # affinity, X-Forwarded-For and logs use it
        if self.send is not None and hasattr(inner, "early"):
            src = source or transport.get_extra_info("peername")
            dst = (header.destination if header is not None else None) or transport.get_extra_info(
                "sockname"
            )
            # queued ahead of the client's bytes: the tcp relay writes ``early`` first
            inner.early.insert(0, proxyproto.build(self.send, src[:2], dst[:2]))
        if rest:
            inner.data_received(rest)

    def _cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self.transport = None


def wrap(
    factory: Callable[[], Any], listener: Any, loop: asyncio.AbstractEventLoop
) -> Callable[[], Any]:
    """The listener's protocol factory, fronted by PROXY protocol handling when configured."""
    if not listener.proxy_protocol and not listener.send_proxy_protocol:
        return factory
    send = {"v1": 1, "v2": 2}.get(listener.send_proxy_protocol)
    if not listener.proxy_protocol:
        # only sending: the client's own address goes to the backend
        return lambda: ProxyProtocolFront(factory, (), send, loop, accept=False)
    trusted = proxyproto.networks(listener.proxy_protocol_from)
    return lambda: ProxyProtocolFront(factory, trusted, send, loop)


#: RFC 9113 §3.4: the client connection preface; an h2c listener tells HTTP/2 by it
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class ProtocolChooser(asyncio.Protocol):
    """HTTP/2 or HTTP/1.1 for one new connection, then out of the way (``set_protocol``).

    On TLS the handshake already chose (ALPN ``h2``): the hand-over happens in
    ``connection_made``, before any byte. On an h2c listener the first bytes tell: the 24-byte
    preface is HTTP/2 with prior knowledge (RFC 9113 §3.3), anything else HTTP/1.1 (no request
    line starts with ``PRI *``'s bytes past the method). At most 24 bytes are held; a client
    silent for ``timeouts.header`` is closed, as the HTTP/1.1 side would.
    """

    def __init__(
        self,
        http1: Callable[[], Any],
        h2: Callable[[], Any],
        sniff: bool,
        loop: asyncio.AbstractEventLoop,
        header_timeout: float,
        metrics: Any,
    ) -> None:
        self.http1 = http1
        self.h2 = h2
        self.sniff = sniff
        self.loop = loop
        self.header_timeout = header_timeout
        self.metrics = metrics
        self.transport: Any = None
        self.buffer = b""
        self.client_ip: str | None = None  # set by a PROXY protocol front, passed on
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            h2 = ssl_object.selected_alpn_protocol() == "h2"
            self._hand_over(self.h2 if h2 else self.http1, b"", h2)
        elif not self.sniff:
            self._hand_over(self.http1, b"", False)
        else:
            self.timer = self.loop.call_later(self.header_timeout, self._timeout)

    def _timeout(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer = self.buffer + data
        n = min(len(buffer), len(H2_PREFACE))
        if buffer[:n] != H2_PREFACE[:n]:
            self._hand_over(self.http1, buffer, False)
        elif n == len(H2_PREFACE):
            self._hand_over(self.h2, buffer, True)

    def _hand_over(self, factory: Callable[[], Any], data: bytes, h2: bool) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        transport, self.transport, self.buffer = self.transport, None, b""
        if not h2:
            self.metrics.protocol_connections.labels("http/1.1").inc()
        inner = factory()
        transport.set_protocol(inner)
        inner.connection_made(transport)
        if self.client_ip is not None:
            inner.client_ip = self.client_ip
        if data:
            inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None  # before a protocol was chosen: nothing to answer

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.transport = None


def choose(
    http1: Callable[[], Any], h2: Callable[[], Any], listener: Any, ctx: Any
) -> Callable[[], Any]:
    """The factory of an http listener: HTTP/1.1 alone, or chosen per connection when the
    listener may speak HTTP/2 (TLS with ``h2``, cleartext with ``h2c``)."""
    tls = bool(listener.tls)
    if (tls and not listener.h2) or (not tls and not listener.h2c):
        return http1
    loop, timeout, metrics = ctx.loop, ctx.timeouts.header, ctx.metrics
    return lambda: ProtocolChooser(http1, h2, not tls, loop, timeout, metrics)
