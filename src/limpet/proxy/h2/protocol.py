"""I/O: the asyncio protocol of an HTTP/2 client connection, thin around ``H2Core``.

One read: the core turns the bytes into events, each stream (limpet.proxy.h2.stream) acts on
its own, and what the core has to send leaves in one write. Connection-level duties live here:
the connection limit, the idle timeout (no stream open for ``timeouts.idle``; the first request
within ``timeouts.header``), the socket's write pressure passed to every stream, GOAWAY on
drain (RFC 9113 §6.8: the last stream id we took; open streams finish, new ones are refused),
and the log of why a connection ended (the attack bounds say which one was hit).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

from limpet.proxy.goaway import TO_CLIENT, to_backend
from limpet.proxy.h2 import core as h2core
from limpet.proxy.h2 import messages
from limpet.proxy.h2.core import H2Core
from limpet.proxy.h2.limits import H2Limits
from limpet.proxy.h2.stream import H2Stream
from limpet.proxy.headers import parse_cookies
from limpet.proxy.http1 import Deadline

if TYPE_CHECKING:
    from limpet.proxy.context import ProxyContext

log = logging.getLogger("limpet.proxy.h2")

#: how long a closing connection reads and drops what the client still sends (see close)
LINGER = 1.0


class H2Downstream(asyncio.Protocol):
    """One HTTP/2 client connection (after ALPN h2, or an h2c preface)."""

    def __init__(self, ctx: ProxyContext, h2limits: H2Limits | None = None) -> None:
        self.ctx = ctx
        self.loop = ctx.loop
        self.timeouts = ctx.timeouts
        self.h2limits = h2limits or H2Limits(
            max_header_list_size=ctx.limits.max_header_bytes,
            max_header_block=ctx.limits.max_header_bytes,
        )
        self.core = H2Core(self.h2limits)
        self.streams: dict[int, H2Stream] = {}
        self.transport: asyncio.Transport | None = None
        #: the client's address (a PROXY protocol front may set it after connection_made)
        self.client_ip = ""
        self.scheme = b"http"
        self.timer = Deadline(self.loop)
        self.write_paused = False
        self.draining = False
        self.lingering = False  # closing: GOAWAY and FIN sent, reads dropped (see close)
        self.flush_handle: asyncio.Handle | None = None
        self._cookie_key: list[bytes] | None = None
        self._cookie_jar: dict[str, str] = {}

    def __repr__(self) -> str:
        return (
            f"H2Downstream(client={self.client_ip!r}, streams={len(self.streams)}, "
            f"draining={self.draining})"
        )

    # -- connection lifecycle ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if not self.client_ip:
            self.client_ip = peer[0] if peer else ""
        tls = transport.get_extra_info("sslcontext") is not None
        self.scheme = b"https" if tls else b"http"
        ctx = self.ctx
        ctx.connections.add(self)
        ctx.metrics.downstream_connections.inc()
        ctx.metrics.protocol_connections.labels("h2" if tls else "h2c").inc()
        if len(ctx.connections) > ctx.limits.max_connections or ctx.stopping:
            ctx.metrics.local_responses.labels("503").inc()
            why = "shutting down" if ctx.stopping else "too many connections; retry later"
            self.core.goaway(h2core.NO_ERROR, why)  # (last stream 0: nothing was processed)
            self.close()
            return
        self.flush()  # our SETTINGS (RFC 9113 §3.4: the server preface)
        self.timer.arm(self.timeouts.header, self.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.ctx.connections.discard(self)
        self.ctx.metrics.downstream_connections.dec()
        self.timer.cancel()
        self.transport = None
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            stream.client_reset()

    def eof_received(self) -> bool | None:
        return None  # HTTP/2 has no half-closed connection: close

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # after our GOAWAY and FIN: read and dropped until the socket closes
        core = self.core
        for kind, sid, value in core.receive(data, self.loop.time()):
            stream = self.streams.get(sid)
            if kind == h2core.BODY:
                if stream is not None:
                    stream.client_data(value)  # type: ignore[arg-type]
                else:
                    core.ack(sid, len(value))  # type: ignore[arg-type]
            elif kind == h2core.REQUEST:
                fields, ended = cast("tuple[list[tuple[bytes, bytes]], bool]", value)
                self.request(sid, fields, ended)
            elif kind == h2core.END:
                if stream is not None:
                    stream.client_end()
            elif kind == h2core.TRAILERS:
                if stream is not None:
                    stream.client_trailers(value)  # type: ignore[arg-type]
            elif kind == h2core.RESET:
                if stream is not None:
                    self.streams.pop(sid, None)
                    stream.client_reset()
            elif kind == h2core.WRITABLE:
                if stream is not None and core.pending(sid) <= self.h2limits.send_buffer // 2:
                    stream.drained()
            elif kind == h2core.CLOSED:
                self.ended(str(value))
                return
        if core.closed:  # a bound hit while the streams acted (provoked resets)
            self.ended(core.reason)
            return
        self.flush()

    def request(self, sid: int, fields: list[tuple[bytes, bytes]], ended: bool) -> None:
        core = self.core
        metrics = self.ctx.metrics
        if self.draining:
            core.reset(sid, h2core.REFUSED_STREAM)  # after our GOAWAY: retry elsewhere
            return
        self.timer.disarm()
        try:
            if len(fields) > self.ctx.limits.max_headers + 5:  # (+ the 5 pseudo-fields)
                # limits.max-headers, as on HTTP/1.1 (a backend is not handed thousands)
                raise messages.Unsupported(431, "too many header fields")
            req = messages.request(fields)
        except messages.Malformed as exc:
            log.info("h2 %s stream %d: malformed request: %s", self.client_ip, sid, exc)
            metrics.local_responses.labels("400").inc()  # (HTTP/1.1's answer to the same)
            core.reset(sid, h2core.PROTOCOL_ERROR)
            return
        except messages.Unsupported as exc:
            stream = self.streams[sid] = H2Stream(
                self, sid, messages.Request(b"GET", b"/", [], [], False, None)
            )
            stream.client_ended = ended
            stream.refuse(exc.status, exc.reason)
            return
        metrics.protocol_requests.labels("h2-websocket" if req.websocket else "h2").inc()
        stream = self.streams[sid] = H2Stream(self, sid, req)
        stream.start(ended)

    def maybe_done(self, stream: H2Stream) -> None:
        """A stream ended one of its halves; forget it when both are over (a WebSocket's
        tunnel too: both FINs passed, it closes itself)."""
        if stream.ended and stream.client_ended:
            if self.streams.get(stream.sid) is stream:
                del self.streams[stream.sid]
                stream.give_back_window()
            if not self.streams:
                if self.draining:
                    self.close()
                else:
                    self.timer.arm(self.timeouts.idle, self.idle_timeout)

    def ended(self, reason: str) -> None:
        """The core ended the connection (a bound, a protocol error, the client's GOAWAY)."""
        level = logging.WARNING if "GOAWAY" not in reason else logging.DEBUG
        log.log(level, "h2 %s: connection ended: %s", self.client_ip, reason)
        if "GOAWAY" not in reason:
            self.ctx.metrics.h2_goaways.labels(_kind(reason)).inc()
        self.close()

    def idle_timeout(self) -> None:
        if self.transport is not None and not self.streams:
            self.core.goaway(h2core.NO_ERROR, "idle")
            self.close()

    def drain(self) -> None:
        """Shutdown began: GOAWAY with the last stream id; open streams finish (the server's
        drain deadline ends the rest)."""
        if self.transport is None or self.draining:
            return
        self.draining = True
        self.core.goaway(h2core.NO_ERROR, "shutting down", final=not self.streams)
        if not self.streams:
            self.close()
        else:
            self.flush()

    def go_away(self) -> None:
        """The drain deadline: WebSocket streams get a 1001 close frame both ways (as their
        HTTP/1.1 twins do, limpet.proxy.goaway), the rest ends with the connection."""
        for stream in list(self.streams.values()):
            if stream.tunnel is not None:
                stream.tunnel.close(to_client=TO_CLIENT, to_backend=to_backend())
        if not self.core.closed:
            self.core.goaway(h2core.NO_ERROR, "shutting down")
        self.close()

    def close(self) -> None:
        """Close after the GOAWAY: our side first (FIN), then, after a moment of reading and
        dropping what the client still sends, the socket. Closing a socket with unread bytes
        sends a reset, which can destroy the GOAWAY in the client's receive queue before it
        is read (the same reason as HTTP/1.1's lingering close, RFC 9112 §9.6)."""
        transport = self.transport
        if transport is None or self.lingering:
            return
        self.flush()
        self.lingering = True
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        if transport.can_write_eof():
            transport.write_eof()
            transport.resume_reading()
            self.timer.cancel()
            self.timer.arm(LINGER, self.abort)
        else:
            transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- output --------------------------------------------------------------------------------
    def flush(self) -> None:
        self.flush_handle = None
        data = self.core.data_to_send()
        if data and self.transport is not None and not self.lingering:
            self.transport.write(data)

    def flush_soon(self) -> None:
        """Flush at the end of this loop turn: what tunnels (WebSockets on streams) write in
        one turn leaves in one send."""
        if self.flush_handle is None:
            self.flush_handle = self.loop.call_soon(self.flush)

    def pause_writing(self) -> None:
        self.write_paused = True
        for stream in self.streams.values():
            stream.full()

    def resume_writing(self) -> None:
        self.write_paused = False
        core, limit = self.core, self.h2limits.send_buffer
        for stream in list(self.streams.values()):
            if core.pending(stream.sid) <= limit:
                stream.drained()

    def cookies(self, values: list[bytes]) -> dict[str, str]:
        """The request's cookies, parsed once per distinct Cookie field on this connection."""
        if values != self._cookie_key:
            self._cookie_jar = parse_cookies([v.decode("latin-1") for v in values])
            self._cookie_key = values
        return self._cookie_jar


def _kind(reason: str) -> str:
    """The metric label of why a connection ended."""
    for word, kind in (
        ("reset", "resets"),
        ("PING", "pings"),
        ("SETTINGS", "settings"),
        ("PRIORITY", "priority"),
        ("empty", "empty-frames"),
        ("CONTINUATION", "continuation"),
        ("header block", "header-bytes"),
        ("protocol error", "protocol-error"),
    ):
        if word in reason:
            return kind
    return "other"
