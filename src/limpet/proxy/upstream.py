"""I/O: connections to one backend (the upstream side), kept alive and reused.

``UpstreamConnection`` is an asyncio.Protocol fed by the wire core's response parser
(limpet.proxy.wire.ResponseParser: one call per read, events out); it hands each event to the
Exchange it currently serves. After a ``101`` (or in TCP mode) it becomes one
end of a byte tunnel. ``UpstreamPool`` keeps a backend's idle connections for reuse (LIFO, so the
warmest connection goes first and surplus ones can time out at the backend).

Two builds of this one file, as of http1.py: this pure-Python reference and
``limpet.proxy._cupstream`` compiled by Cython; limpet.proxy.builds picks one.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Protocol

from limpet.proxy import wire
from limpet.proxy.wire.response import BODY, END, HEAD, UPGRADE, ResponseHead

try:
    import cython
except ImportError:  # the reference runs without Cython installed
    from limpet.proxy.wire import _cython_shim as cython  # type: ignore[no-redef,unused-ignore]

#: True in the build Cython compiled from this file (limpet.proxy._cupstream), False here
COMPILED: bool = cython.compiled

#: a backend's response head beyond this (or beyond MAX_RESPONSE_FIELDS fields) is broken HTTP,
#: answered 502: every buffer has a bound. HAProxy fits a whole head in its 16 KB buffer,
#: nginx in proxy_buffer_size (4-8 KB); this is generous on purpose (large Set-Cookie/CSP).
MAX_RESPONSE_HEAD = 128 * 1024
MAX_RESPONSE_FIELDS = 512
#: a pooled connection idle longer than this is closed, never reused: a backend closes its idle
#: keep-alive connections after its own timeout (Node.js http, uvicorn and Apache: 5 s; nginx
#: 75 s), and a request written as that close crosses it meets a reset. 4 s stays below the
#: common 5 s (gunicorn's sync workers close after 2 s: their requests rely on the rule below)
IDLE_CLOSE = 4.0
#: a request that must not be sent twice (http1.REPLAYABLE) takes a pooled connection only if
#: that connection answered within this (HAProxy's ``http-reuse safe`` idea): a backend does
#: not close a connection it answered on a moment ago, so the keep-alive race cannot turn the
#: request into a 502; else it goes on a new connection
SAFE_REUSE = 1.0


class ExchangeSide(Protocol):
    """The exchange an upstream connection serves, as the connection sees it (http1.Exchange).

    The connection never reaches past it to the downstream: corking the client's writes for
    one upstream read, and holding the client back while the backend is slow to read, go
    through the exchange (which passes them to its DownstreamSide).
    """

    upstream: UpstreamConnection | None

    def cork(self) -> None: ...
    def flush(self) -> None: ...
    def pause_downstream(self, reason: str) -> None: ...
    def resume_downstream(self, reason: str) -> None: ...
    def response_head(self, head: ResponseHead, conn: UpstreamConnection) -> None: ...
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
        "backend_id",
        "closed",
        "exchange",
        "idle_since",
        "keep_alive",
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
        self.parser = wire.ResponseParser(MAX_RESPONSE_HEAD, MAX_RESPONSE_FIELDS)
        self.closed = False
        self.reused = False
        self.keep_alive = False
        self.idle_since = 0.0  # (time.monotonic) when it last went back to the pool

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
        serving = exchange  # (it corks and flushes even if it lets go of us meanwhile)
        serving.cork()
        try:
            for kind, value in self.parser.feed(data):
                if kind == UPGRADE:  # (after a 101 the exchange has let go of this connection)
                    self.upgraded(serving, value)
                    continue
                exchange = self.exchange
                if exchange is None:
                    break  # the exchange ended (a HEAD's response, a failure): the rest is moot
                if kind == BODY:
                    exchange.response_body(value)
                elif kind == HEAD:
                    # the backend keeps this connection open after the response (RFC 9112 §9.3)
                    self.keep_alive = value.keep_alive
                    exchange.response_head(value, self)
                elif kind == END:
                    exchange.response_complete(self, self.keep_alive)
                else:
                    self.abort()
                    exchange.upstream_failed(f"invalid HTTP from the backend: {value}")
        finally:
            serving.flush()

    def upgraded(self, serving: ExchangeSide, rest: bytes) -> None:
        """After a ``101``: the bytes after its head are the tunnel's first ones."""
        serving.flush()  # the 101 head first, then the tunnel's first bytes
        peer = self.tunnel_peer
        if peer is None:
            # a 101 to a request that asked for no upgrade: nothing can follow it
            exchange = self.exchange
            self.abort()
            if exchange is not None:
                exchange.upstream_failed("invalid HTTP from the backend: 101 without an upgrade")
            return
        if rest and peer.transport is not None:
            peer.transport.write(rest)

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
            self.exchange.pause_downstream("upstream")

    def resume_writing(self) -> None:
        if self.tunnel_peer is not None:
            if self.tunnel_peer.transport is not None:
                self.tunnel_peer.transport.resume_reading()
        elif self.exchange is not None:
            self.exchange.resume_downstream("upstream")

    # -- pool side ----------------------------------------------------------------------------
    def release(self, keep_alive: bool) -> None:
        """The exchange is done with this connection: back to the idle list, or closed."""
        self.exchange = None
        parser = self.parser
        # bytes beyond the response belong to no request: such a connection is not reused
        if keep_alive and not self.closed and self.tunnel_peer is None and not parser.buffered:
            parser.reset()
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

    def take_idle(
        self, replayable: bool = True, now: float | None = None
    ) -> UpstreamConnection | None:
        """The warmest usable idle connection, or None (make a new one).

        Connections idle longer than IDLE_CLOSE are closed on the way. A request that is not
        ``replayable`` takes one only if it answered within SAFE_REUSE; the warmest is on top
        (LIFO), so if it is older, every other one is too: they stay for other requests.
        """
        if now is None:
            now = time.monotonic()
        idle = self.idle
        if idle and now - idle[0].idle_since > IDLE_CLOSE:
            self.expire(now)
        while idle:
            conn = idle[-1]
            if not replayable and now - conn.idle_since > SAFE_REUSE:
                return None
            idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                conn.reused = True
                return conn
        return None

    def expire(self, now: float) -> None:
        """Close the idle connections older than IDLE_CLOSE (the oldest are at the bottom)."""
        idle = self.idle
        n = 0
        while n < len(idle) and now - idle[n].idle_since > IDLE_CLOSE:
            n += 1
        old = idle[:n]
        del idle[:n]
        for conn in old:
            conn.close()

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

    def put(self, conn: UpstreamConnection, now: float | None = None) -> None:
        if len(self.idle) >= self.max_idle:
            conn.close()
        else:
            conn.idle_since = time.monotonic() if now is None else now
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
