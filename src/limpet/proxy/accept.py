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
