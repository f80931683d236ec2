"""I/O: connections to one backend (the upstream side), kept alive and reused.

``UpstreamConnection`` is an asyncio.Protocol with an httptools response parser; it hands each
parsed piece to the Exchange it currently serves. After a ``101`` (or in TCP mode) it becomes one
end of a byte tunnel. ``UpstreamPool`` keeps a backend's idle connections for reuse (LIFO, so the
warmest connection goes first and surplus ones can time out at the backend).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, Protocol

import httptools


class ExchangeSide(Protocol):
    """The exchange an upstream connection serves, as the connection sees it (http1.Exchange)."""

    down: Any  # the Downstream: cork/flush its writes, pause/resume its reading
    upstream: UpstreamConnection | None
    resp_headers: list[tuple[bytes, bytes]]

    def response_head(self, status: int, reason: bytes, conn: UpstreamConnection) -> None: ...
    def response_body(self, data: bytes) -> None: ...
    def response_complete(self, conn: UpstreamConnection, upstream_keep_alive: bool) -> None: ...
    def upstream_lost(self, exc: BaseException | None) -> None: ...
    def upstream_failed(self, reason: str) -> None: ...


class TunnelPeer(Protocol):
    """The other end of a tunnel: whatever one side reads, the peer's transport writes."""

    transport: asyncio.Transport | None

    def peer_lost(self) -> None: ...
    def peer_eof(self) -> None: ...
    def tunnel_activity(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One TCP connection to a backend, serving one exchange at a time (no upstream pipelining)."""

    __slots__ = (
        "_status_reason",
        "backend_id",
        "closed",
        "exchange",
        "parser",
        "pool",
        "reused",
        "transport",
        "tunnel_peer",
    )

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.backend_id = pool.backend_id
        self.transport: asyncio.Transport | None = None
        self.exchange: ExchangeSide | None = None
        self.tunnel_peer: TunnelPeer | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self._status_reason = b""

    def __repr__(self) -> str:
        return f"UpstreamConnection(backend={self.backend_id!r}, closed={self.closed})"

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        peer = self.tunnel_peer
        if peer is not None:
            if peer.transport is not None:
                peer.transport.write(data)
            peer.tunnel_activity()
            return
        exchange = self.exchange
        if exchange is None:
            # bytes while idle: the backend broke HTTP framing; this connection is unusable
            self.abort()
            return
        down = exchange.down
        down.cork()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0] if exc.args else len(data)
            rest = data[offset:]
            down.flush()  # the 101 head first, then the tunnel's first bytes
            if rest and self.tunnel_peer is not None and self.tunnel_peer.transport is not None:
                self.tunnel_peer.transport.write(rest)
        except httptools.HttpParserError as exc:
            exchange = self.exchange
            self.abort()
            if exchange is not None:
                exchange.upstream_failed(f"invalid HTTP from the backend: {exc}")
        finally:
            down.flush()

    def eof_received(self) -> bool | None:
        if self.tunnel_peer is not None:
            self.tunnel_peer.peer_eof()
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        peer, self.tunnel_peer = self.tunnel_peer, None
        if peer is not None:
            peer.peer_lost()
            return
        exchange, self.exchange = self.exchange, None
        if exchange is not None and exchange.upstream is self:
            exchange.upstream_lost(exc)

    def pause_writing(self) -> None:
        # the backend reads slower than the client sends: stop reading the client
        if self.tunnel_peer is not None:
            if self.tunnel_peer.transport is not None:
                self.tunnel_peer.transport.pause_reading()
        elif self.exchange is not None:
            self.exchange.down.pause_for("upstream")

    def resume_writing(self) -> None:
        if self.tunnel_peer is not None:
            if self.tunnel_peer.transport is not None:
                self.tunnel_peer.transport.resume_reading()
        elif self.exchange is not None:
            self.exchange.down.resume_for("upstream")

    # -- httptools callbacks ----------------------------------------------------------------
    def on_status(self, status: bytes) -> None:
        self._status_reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.exchange is not None:
            self.exchange.resp_headers.append((name, value))

    def on_headers_complete(self) -> None:
        reason, self._status_reason = self._status_reason, b""
        if self.exchange is not None:
            self.exchange.response_head(self.parser.get_status_code(), reason, self)

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None:
            self.exchange.response_body(body)

    def on_message_complete(self) -> None:
        if self.exchange is not None:
            self.exchange.response_complete(self, self.parser.should_keep_alive())

    # -- pool side ----------------------------------------------------------------------------
    def release(self, keep_alive: bool) -> None:
        """The exchange is done with this connection: back to the idle list, or closed."""
        self.exchange = None
        if keep_alive and not self.closed and self.tunnel_peer is None:
            self.parser = httptools.HttpResponseParser(self)
            self.pool.put(self)
        else:
            self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class UpstreamPool:
    """A backend's idle connections, kept for reuse (HTTP/1.1 keep-alive upstream)."""

    def __init__(
        self,
        backend_id: str,
        address: str,
        max_idle: int = 64,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.backend_id = backend_id
        self.address = address
        self.address_bytes = address.encode()  # the Host of an HTTP/1.0 request without one
        #: TLS to the backend (an https:// URL): verified against the pool's CA, SNI = host
        self.ssl = ssl_context
        host, _, port = address.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.max_idle = max_idle
        self.idle: list[UpstreamConnection] = []

    def __repr__(self) -> str:
        return f"UpstreamPool({self.backend_id!r}, {self.address}, idle={len(self.idle)})"

    def take_idle(self) -> UpstreamConnection | None:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                conn.reused = True
                return conn
        return None

    async def connect(self, timeout: float) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        conn = UpstreamConnection(self)
        # the connect timeout covers the TLS handshake too; a certificate that fails
        # verification raises ssl.SSLCertVerificationError, an OSError: a connect failure
        await asyncio.wait_for(
            loop.create_connection(
                lambda: conn,
                self.host,
                self.port,
                ssl=self.ssl,
                server_hostname=self.host if self.ssl is not None else None,
            ),
            timeout,
        )
        return conn

    def put(self, conn: UpstreamConnection) -> None:
        if len(self.idle) >= self.max_idle:
            conn.close()
        else:
            self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def close_all(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()
