"""I/O: a TLS listener's connection from its TCP accept to the end of its handshake.

``loop.create_server(ssl=...)`` shows a connection to the protocol only once its handshake has
finished: a stalled ClientHello lived for asyncio's default 60 s and was not counted against
``max-connections`` (2 000 of them took every file descriptor). So a TLS listener is a plain
TCP listener whose protocol is ``TlsFront``, counted from the accept on like any connection;
it runs the handshake itself (``loop.start_tls``) within ``timeouts.handshake`` and then hands
the TLS transport to the real protocol (``transport.set_protocol``), as ``accept`` hands a
connection on after its PROXY header. After the hand-over it is out of the path.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

from limpet.proxy.context import ProxyContext

log = logging.getLogger("limpet.tls")

#: raw bytes held before start_tls takes over: a ClientHello is one record, at most 16 KiB
#: plus its header (RFC 8446 §5.1), usually a few hundred bytes
MAX_HELLO = 16384 + 5


class TlsFront(asyncio.Protocol):
    """Counts a TLS connection while it handshakes, bounds the handshake, then hands over."""

    def __init__(
        self, inner: Callable[[], Any], context: ssl.SSLContext, ctx: ProxyContext
    ) -> None:
        self.inner_factory = inner
        self.context = context
        self.ctx = ctx
        self.transport: Any = None  # the TCP transport, then the TLS one
        self.task: asyncio.Task[None] | None = None
        #: raw bytes read before start_tls took over (the ClientHello), replayed to it
        self.raw: list[bytes] = []
        self.tls_started = False
        #: application data that arrived with the client's Finished, before the hand-over
        self.early: list[bytes] = []
        self.early_size = 0
        self.eof = False
        self.lost = False
        # what the server's stop() reads of a connection
        self.active = self.tunnel = None

    def __repr__(self) -> str:
        return f"TlsFront(handshaking={self.task is not None and not self.task.done()})"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        ctx = self.ctx
        ctx.connections.add(self)
        ctx.metrics.downstream_connections.inc()
        if len(ctx.connections) > ctx.limits.max_connections or ctx.stopping:
            # no TLS yet, so no 503 to send: closed at once, as HAProxy and nginx do at maxconn
            ctx.metrics.local_responses.labels("503").inc()
            transport.close()
            return
        self.task = ctx.loop.create_task(self.handshake())

    async def handshake(self) -> None:
        loop = self.ctx.loop
        # uvloop starts reading right after connection_made, so the ClientHello may already
        # have arrived here (``data_received`` kept it). Reading stops now; start_tls puts the
        # SSL layer in place and schedules its connection_made, then resumes reading. What
        # arrived before goes to the SSL layer first, through the public BufferedProtocol
        # calls, in a callback queued ahead of both (the handshake starts on those bytes).
        if self.lost:  # gone before its handshake began (a port scan)
            return
        self.transport.pause_reading()
        raw, self.raw = b"".join(self.raw), []
        self.tls_started = True
        if raw:
            loop.call_soon(self._replay, raw)
        try:
            tls = await loop.start_tls(
                self.transport,
                self,
                self.context,
                server_side=True,
                ssl_handshake_timeout=self.ctx.timeouts.handshake,
            )
        except Exception as exc:
            # a port scan, a stalled or aborted ClientHello, a client refusing our certificate:
            # the client's doing, said at debug level only (a flood must not flood the log);
            # anything else is said louder, in one line (the connection is dropped either way)
            expected = (OSError, ssl.SSLError, TimeoutError, ConnectionError, EOFError)
            log.log(
                logging.DEBUG if isinstance(exc, expected) else logging.WARNING,
                "TLS handshake failed: %r",
                exc,
            )
            self._release()
            if self.transport is not None:
                self.transport.abort()
            return
        if tls is None or self.lost:
            self._release()
            return
        self._release()
        self.transport = tls
        inner = self.inner_factory()
        tls.set_protocol(inner)
        inner.connection_made(tls)
        early, self.early = self.early, []
        for chunk in early:
            inner.data_received(chunk)
        if self.eof and not inner.eof_received():
            tls.close()

    def _release(self) -> None:
        """Stop counting this front: from here on the real protocol counts the connection."""
        if self in self.ctx.connections:
            self.ctx.connections.discard(self)
            self.ctx.metrics.downstream_connections.dec()

    def _replay(self, data: bytes) -> None:
        """Give the SSL layer the bytes this protocol read before it was in place."""
        layer = self.transport.get_protocol() if self.transport is not None else None
        if layer is None or layer is self:
            return
        if not hasattr(layer, "get_buffer"):
            layer.data_received(data)
            return
        view = memoryview(data)
        while view:
            buf = layer.get_buffer(len(view))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            layer.buffer_updated(n)
            view = view[n:]

    def data_received(self, data: bytes) -> None:
        self.early_size += len(data)
        if not self.tls_started:
            self.raw.append(data)  # the ClientHello, read before start_tls (see handshake)
            if self.early_size > MAX_HELLO:
                self.close()
            return
        # application data the SSL layer decrypted before the hand-over
        if self.early_size > MAX_HELLO + self.ctx.limits.max_header_bytes:
            self.close()  # nothing a request head needs: the real protocol would refuse it too
            return
        self.early.append(data)

    def eof_received(self) -> bool:
        self.eof = True
        return True  # keep the transport open until the real protocol decides

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._release()

    # what the server's stop() calls
    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self._release()
        if self.transport is not None:
            self.transport.abort()

    def drain(self) -> None:
        self.close()  # a handshake in progress has no request to finish


def wrap(
    factory: Callable[[], Any], context: ssl.SSLContext | None, ctx: ProxyContext
) -> Callable[[], Any]:
    """The listener's protocol factory behind a counted, bounded TLS handshake (None: plain)."""
    if context is None:
        return factory
    return lambda: TlsFront(factory, context, ctx)
