"""I/O: L4 mode: a plain TCP proxy whose backend is chosen by client-ip (or none) affinity.

The Alibaba SLB / kube-proxy kind of persistence: only the client address is known, so the
pool's policy decides on it alone, and the connection becomes a byte tunnel at once.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from limpet.affinity.base import RequestFacts
from limpet.pool.health import HealthEvent

if TYPE_CHECKING:
    from limpet.proxy.context import PoolRuntimeView, ProxyContext
    from limpet.proxy.upstream import UpstreamConnection


class TcpDownstream(asyncio.Protocol):
    """One client connection in TCP mode, tunnelled to the backend its policy picks."""

    def __init__(self, ctx: ProxyContext, runtime: PoolRuntimeView) -> None:
        self.ctx = ctx
        self.runtime = runtime
        self.loop = ctx.loop
        self.transport: asyncio.Transport | None = None
        self.tunnel: UpstreamConnection | None = None
        self.active = None  # no HTTP exchange: lets shutdown treat us like a tunnel
        self.early: list[bytes] = []
        self.backend_id: str | None = None
        self.client_ip = ""
        self._last_activity = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.down_eof = False  # the client sent FIN
        self.up_eof = False  # the backend sent FIN

    def __repr__(self) -> str:
        return f"TcpDownstream(client={self.client_ip!r}, backend={self.backend_id!r})"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if peer else ""
        self.ctx.connections.add(self)
        self.ctx.metrics.downstream_connections.inc()
        if len(self.ctx.connections) > self.ctx.limits.max_connections:
            transport.close()
            return
        transport.pause_reading()  # type: ignore[attr-defined]
        self.loop.create_task(self.connect(set()))

    async def connect(self, failed: set[str]) -> None:
        runtime = self.runtime
        while self.transport is not None:
            pick = runtime.pick(RequestFacts(client_ip=self.client_ip, now=time.time()), failed)
            if pick.backend is None or len(failed) > 2:
                self.close()
                return
            bid = pick.backend.id
            try:
                conn = await runtime.upstreams[bid].connect(self.ctx.timeouts.connect)
            except (TimeoutError, OSError):
                runtime.passive(bid, HealthEvent.PASSIVE_FAIL)
                self.ctx.metrics.upstream_connect_failures.labels(runtime.name, bid).inc()
                failed.add(bid)
                continue
            if self.transport is None:
                conn.close()
                return
            self.backend_id = bid
            runtime.opened(bid, pick)
            self.ctx.metrics.tunnels_open.inc()
            self.tunnel = conn
            conn.tunnel_peer = self
            if self.early and conn.transport is not None:
                conn.transport.write(b"".join(self.early))
                self.early.clear()
            self._last_activity = self.loop.time()
            self._timer = self.loop.call_later(self.ctx.timeouts.tunnel_idle, self._on_timer)
            self.transport.resume_reading()
            return

    def _on_timer(self) -> None:
        limit = self.ctx.timeouts.tunnel_idle
        idle = self.loop.time() - self._last_activity
        if idle >= limit:
            self.close()
        else:
            self._timer = self.loop.call_later(limit - idle, self._on_timer)

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None and tunnel.transport is not None:
            tunnel.transport.write(data)
            self._last_activity = self.loop.time()
        else:
            # uvloop may deliver bytes even though we paused in connection_made: keep them
            # for the backend (and stop reading until it is connected)
            self.early.append(data)
            if self.transport is not None:
                self.transport.pause_reading()

    def eof_received(self) -> bool:
        """The client half-closed: pass the FIN on, and end once both directions are done."""
        self.down_eof = True
        tunnel = self.tunnel
        if tunnel is not None and tunnel.transport is not None and tunnel.transport.can_write_eof():
            tunnel.transport.write_eof()
        if self.up_eof or tunnel is None:
            self.close()
            return False
        return True

    def pause_writing(self) -> None:
        if self.tunnel is not None and self.tunnel.transport is not None:
            self.tunnel.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.tunnel is not None and self.tunnel.transport is not None:
            self.tunnel.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.ctx.connections.discard(self)
        self.ctx.metrics.downstream_connections.dec()
        if self._timer is not None:
            self._timer.cancel()
        tunnel, self.tunnel = self.tunnel, None
        if tunnel is not None:
            tunnel.close()
        if self.backend_id is not None:
            self.runtime.closed(self.backend_id)
            self.ctx.metrics.tunnels_open.dec()
            self.backend_id = None
        self.transport = None

    # TunnelPeer
    def peer_lost(self) -> None:
        self.tunnel = None
        self.close()

    def peer_eof(self) -> None:
        self.up_eof = True
        if self.transport is not None and self.transport.can_write_eof():
            self.transport.write_eof()
        if self.down_eof:
            self.close()

    def tunnel_activity(self) -> None:
        self._last_activity = self.loop.time()

    def close(self) -> None:
        if self.tunnel is not None:
            self.tunnel.close()
        if self.transport is not None:
            self.transport.close()
