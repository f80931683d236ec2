"""I/O: a byte tunnel between a client connection and a backend connection.

One class for both uses: an HTTP connection after ``101 Switching Protocols`` (WebSocket or any
other upgrade) and every connection of ``--mode tcp``. Bytes go both ways untouched, with:

- half-close passed through: a FIN from one side is written on to the other (``write_eof``) and
  the tunnel ends once both directions have ended, or when either connection is lost. A side
  that cannot half-close (a TLS transport) ends the tunnel at the first FIN instead;
- coupled back-pressure: a side whose transport is over its high-water mark pauses reading on
  the other side until it drains;
- an idle timeout (``timeouts.tunnel-idle``) with no byte either way (checked on the proxy's
  shared timer wheel, limpet.proxy.idle: up to half a second late, never early);
- accounting: the tunnels gauge while it is open, and ``release`` (the backend's open count)
  once when it ends.

The owning protocol (``Downstream`` after an upgrade, ``TcpDownstream``) hands it the client's
reads, FIN, write pressure and loss; the ``UpstreamConnection`` sees it as its ``TunnelPeer``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from limpet.proxy.context import ProxyContext
    from limpet.proxy.upstream import UpstreamConnection


class Tunnel:
    """Bytes both ways between the client (its transport) and ``conn`` (a backend connection)."""

    __slots__ = (
        "backend_ended",
        "client_ended",
        "conn",
        "ctx",
        "ended",
        "idle_slot",
        "last_activity",
        "loop",
        "release",
        "transport",
        "upgraded",
    )

    def __init__(
        self,
        ctx: ProxyContext,
        client: asyncio.Transport,
        conn: UpstreamConnection,
        release: Callable[[], object],
        *,
        upgraded: bool,
    ) -> None:
        self.ctx = ctx
        self.loop = ctx.loop
        #: the client's transport (TunnelPeer: where the backend's bytes go, and what the
        #: backend's write pressure pauses)
        self.transport: asyncio.Transport | None = client
        self.conn = conn
        self.release = release  # called once when the tunnel ends
        self.upgraded = upgraded  # after an HTTP 101 (a WebSocket gets 1001 at the deadline)
        self.client_ended = False  # the client sent FIN (passed on to the backend)
        self.backend_ended = False  # the backend sent FIN (passed on to the client)
        self.ended = False
        self.last_activity = 0.0
        self.idle_slot: int | None = None  # where ctx.idle filed its deadline (limpet.proxy.idle)

    def __repr__(self) -> str:
        return (
            f"Tunnel(backend={self.conn.backend_id!r}, upgraded={self.upgraded}, "
            f"client_ended={self.client_ended}, backend_ended={self.backend_ended}, "
            f"ended={self.ended})"
        )

    def start(self, early: bytes) -> None:
        """Take over the backend connection; ``early`` is what the client sent ahead."""
        self.conn.tunnel_peer = self
        self.ctx.metrics.tunnels_open.inc()
        if early and self.conn.transport is not None:
            self.conn.transport.write(early)
        self.last_activity = self.loop.time()
        # one shared timer for every tunnel's idle deadline, not a TimerHandle each
        self.ctx.idle.add(self, self.last_activity + self.ctx.timeouts.tunnel_idle)

    def _on_timer(self) -> None:
        """The idle deadline filed for this tunnel came: close it, or file the new one (bytes
        went by since)."""
        if self.ended:
            return
        limit = self.ctx.timeouts.tunnel_idle
        if self.loop.time() - self.last_activity >= limit:
            self.close()
        else:
            self.ctx.idle.add(self, self.last_activity + limit)

    # -- the client side (called by the owning protocol) -----------------------------------------
    def from_client(self, data: bytes) -> None:
        upstream = self.conn.transport
        if upstream is not None:
            upstream.write(data)
        self.last_activity = self.loop.time()

    def client_eof(self) -> bool:
        """The client half-closed; the result is what ``eof_received`` returns (keep open)."""
        self.client_ended = True
        upstream = self.conn.transport
        if self.backend_ended or upstream is None or not upstream.can_write_eof():
            self.close()
            return False
        upstream.write_eof()
        return True

    def client_full(self) -> None:
        """The client reads slower than the backend sends: stop reading the backend."""
        if self.conn.transport is not None:
            self.conn.transport.pause_reading()

    def client_drained(self) -> None:
        if self.conn.transport is not None:
            self.conn.transport.resume_reading()

    def client_lost(self) -> None:
        self.transport = None
        self.close()

    # -- TunnelPeer: the backend side (called by the UpstreamConnection) ---------------------------
    def peer_eof(self) -> None:
        self.backend_ended = True
        client = self.transport
        if self.client_ended or client is None or not client.can_write_eof():
            self.close()
            return
        client.write_eof()

    def peer_lost(self) -> None:
        self.close()

    def tunnel_activity(self) -> None:
        self.last_activity = self.loop.time()

    # -- the end -----------------------------------------------------------------------------------
    def close(self, to_client: bytes = b"", to_backend: bytes = b"") -> None:
        """End the tunnel: both connections close once what they hold is written (with a last
        message each, e.g. goaway's WebSocket close frames). Idempotent."""
        upstream, client = self.conn.transport, self.transport
        # a side already half-closed (its FIN passed on with write_eof) takes no last message:
        # a write after write_eof raises, and it ended a SIGTERM with exit 1
        if upstream is not None and not upstream.is_closing():
            if to_backend and not self.client_ended:
                upstream.write(to_backend)
            self.conn.close()
        if client is not None and not client.is_closing():
            if to_client and not self.backend_ended:
                client.write(to_client)
            client.close()
        if self.ended:
            return
        self.ended = True
        self.ctx.idle.remove(self)
        self.ctx.metrics.tunnels_open.dec()
        self.release()
