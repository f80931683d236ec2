"""I/O: L4 mode: a plain TCP proxy whose backend is chosen by client-ip (or none) affinity.

The Alibaba SLB / kube-proxy kind of persistence: only the client address is known, so the
pool's policy decides on it alone, and the connection becomes a byte tunnel at once (the same
``Tunnel`` an HTTP upgrade becomes: limpet.proxy.tunnel).
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import TYPE_CHECKING

from limpet.affinity.base import RequestFacts
from limpet.proxy import goaway, retry
from limpet.proxy.tunnel import Tunnel

if TYPE_CHECKING:
    from limpet.proxy.context import PoolRuntimeView, ProxyContext


class TcpDownstream(asyncio.Protocol):
    """One client connection in TCP mode, tunnelled to the backend its policy picks."""

    # slots: one of these lives as long as its tunnel (no __dict__: ~200 bytes less each)
    __slots__ = (
        "backend_id",
        "client_ip",
        "ctx",
        "early",
        "early_eof",
        "loop",
        "runtime",
        "transport",
        "tunnel",
    )

    def __init__(self, ctx: ProxyContext, runtime: PoolRuntimeView) -> None:
        self.ctx = ctx
        self.runtime = runtime
        self.loop = ctx.loop
        self.transport: asyncio.Transport | None = None
        self.tunnel: Tunnel | None = None
        self.early: list[bytes] = []
        self.early_eof = False  # the client sent FIN before the backend was connected
        self.backend_id: str | None = None
        self.client_ip = ""

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
        self.ctx.spawn(self.connect(set()))

    async def connect(self, failed: set[str]) -> None:
        runtime = self.runtime
        while self.transport is not None:
            pick = runtime.pick(RequestFacts(client_ip=self.client_ip, now=time.time()), failed)
            if pick.backend is None:
                self.close()
                return
            bid = pick.backend.id
            try:
                conn = await runtime.upstreams[bid].connect(self.ctx.timeouts.connect)
            except (TimeoutError, OSError):
                # the same policy as an HTTP exchange's (limpet.proxy.retry)
                if not retry.connect_failed(runtime, self.ctx.metrics, bid, failed):
                    self.close()
                    return
                retry.repinned(runtime, self.ctx.metrics)
                continue
            if self.transport is None:
                conn.close()
                return
            self.backend_id = bid
            runtime.opened(bid, pick)
            self.tunnel = Tunnel(
                self.ctx,
                self.transport,
                conn,
                functools.partial(runtime.closed, bid),
                upgraded=False,
            )
            early, self.early = b"".join(self.early), []
            self.tunnel.start(early)
            if self.early_eof:
                self.tunnel.client_eof()
            else:
                self.transport.resume_reading()
            return

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.from_client(data)
        else:
            # uvloop may deliver bytes even though we paused in connection_made: keep them
            # for the backend (and stop reading until it is connected)
            self.early.append(data)
            if self.transport is not None:
                self.transport.pause_reading()

    def eof_received(self) -> bool:
        """The client half-closed: the tunnel passes the FIN on (limpet.proxy.tunnel)."""
        if self.tunnel is None:
            self.early_eof = True  # passed on once the backend is connected
            return True
        return self.tunnel.client_eof()

    def pause_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.client_full()

    def resume_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.client_drained()

    def connection_lost(self, exc: Exception | None) -> None:
        self.ctx.connections.discard(self)
        self.ctx.metrics.downstream_connections.dec()
        tunnel, self.tunnel = self.tunnel, None
        if tunnel is not None:
            tunnel.client_lost()
        self.backend_id = None
        self.transport = None

    # -- a graceful stop (goaway.Stoppable) ------------------------------------------------------
    def drain(self) -> None:
        """A tunnel runs until the deadline; a connection still picking a backend closes."""
        if self.tunnel is None:
            self.close()

    def go_away(self) -> None:
        goaway.close(self.transport, self.tunnel)

    def close(self) -> None:
        if self.tunnel is not None:
            self.tunnel.close()
        elif self.transport is not None:
            self.transport.close()
