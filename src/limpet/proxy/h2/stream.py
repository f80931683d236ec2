"""I/O: one HTTP/2 stream as the downstream side of an ``Exchange``.

An ``Exchange`` (limpet.proxy.http1) carries an HTTP/2 request exactly as it carries an
HTTP/1.1 one: the same route, affinity policy and filters (Engine.IO sid rewriting included),
the same upstream connections, retries, repins and response timeout. It sees an ``H2Stream``
where it would see a ``Downstream``; the stream offers the same few calls.

What the Exchange writes downstream is HTTP/1.1 response bytes (its head rewriting adds the
affinity Set-Cookie and Via, and the Engine.IO filter rewrites whole handshake answers); the
stream reads them back with the wire core's own response parser and sends the head as HEADERS
(limpet.proxy.h2.messages.response_fields) and the body as DATA within the client's windows.
One translation point keeps the Exchange the single implementation of the proxy's HTTP rules.

Flow control is coupled both ways: request bytes are acknowledged to the client only while the
backend takes them (``pause_for``/``resume_for``, as the Downstream pauses its socket), and
past ``H2Limits.send_buffer`` response bytes held for a shut window, the backend is not read.
After a WebSocket's 101 the stream is one end of a ``Tunnel`` (RFC 8441): ``StreamTransport``
is its client transport, DATA frames both ways, END_STREAM for FIN.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from limpet.proxy.builds import http1 as selected
from limpet.proxy.h2 import messages
from limpet.proxy.h2.core import NO_ERROR, PROTOCOL_ERROR, H2Core
from limpet.proxy.h2.limits import H2Limits
from limpet.proxy.http1 import Deadline, Exchange
from limpet.proxy.states import READING, TUNNEL
from limpet.proxy.tunnel import Tunnel
from limpet.proxy.upstream import MAX_RESPONSE_FIELDS, MAX_RESPONSE_HEAD
from limpet.proxy.wire import ResponseParser  # the selected build (compiled, or the reference)
from limpet.proxy.wire.parser import CHUNKED, LENGTH, NONE, RequestHead
from limpet.proxy.wire.response import BODY, END, ERROR, HEAD

if TYPE_CHECKING:
    from collections.abc import Callable

    from limpet.proxy.upstream import UpstreamConnection
    from limpet.proxy.wire.response import ResponseHead


log = logging.getLogger("limpet.proxy.h2")


class StreamOwner(Protocol):
    """The HTTP/2 connection as its streams see it (limpet.proxy.h2.protocol.H2Downstream):
    the shared h2 state and the connection's writes, nothing of its frame loop."""

    ctx: Any
    client_ip: str
    scheme: bytes
    core: H2Core
    h2limits: H2Limits
    transport: Any

    def flush(self) -> None: ...
    def flush_soon(self) -> None: ...
    def maybe_done(self, stream: H2Stream) -> None: ...
    def cookies(self, values: list[bytes]) -> dict[str, str]: ...


class StreamTransport:
    """The stream as a ``Tunnel`` sees its client: an asyncio transport's few calls."""

    __slots__ = ("stream",)

    def __init__(self, stream: H2Stream) -> None:
        self.stream = stream

    def write(self, data: bytes) -> None:
        self.stream.send_body(data)
        self.stream.conn.flush_soon()  # (the backend's reads come outside our data_received)

    def pause_reading(self) -> None:
        self.stream.pause_for("upstream")

    def resume_reading(self) -> None:
        self.stream.resume_for("upstream")

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.stream.end_response()
        self.stream.conn.flush_soon()

    def close(self) -> None:
        self.stream.end_response()
        self.stream.conn.flush_soon()

    def abort(self) -> None:
        self.stream.reset()
        self.stream.conn.flush_soon()

    def is_closing(self) -> bool:
        return self.stream.ended or self.stream.conn.transport is None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        transport = self.stream.conn.transport
        return default if transport is None else transport.get_extra_info(name, default)


class H2Stream:
    """One request/response (or WebSocket) on an HTTP/2 connection; see the module docstring."""

    __slots__ = (
        "active",
        "client_ended",
        "client_ip",
        "client_ip_bytes",
        "conn",
        "ctx",
        "ended",
        "expected",
        "loop",
        "parser",
        "paused",
        "received",
        "request",
        "resp_timer",
        "responded",
        "scheme",
        "sid",
        "state",
        "timeouts",
        "tunnel",
        "unacked",
        "view",
        "write_paused",
    )

    def __init__(self, conn: StreamOwner, sid: int, request: messages.Request) -> None:
        self.conn = conn
        self.sid = sid
        self.request = request
        ctx = self.ctx = conn.ctx
        self.loop = ctx.loop
        self.timeouts = ctx.timeouts
        # what an Exchange reads of its downstream (the connection's, copied once)
        self.client_ip = conn.client_ip
        self.client_ip_bytes = conn.client_ip.encode()
        self.scheme = conn.scheme
        self.state = READING
        self.resp_timer = Deadline(self.loop)
        self.active: Exchange | None = None
        self.tunnel: Tunnel | None = None
        self.parser = ResponseParser(MAX_RESPONSE_HEAD, MAX_RESPONSE_FIELDS)
        self.view = StreamTransport(self)
        self.paused: set[str] = set()
        self.unacked = 0  # request bytes received while paused, acknowledged on resume
        self.write_paused = False
        self.responded = False  # our HEADERS went out
        self.ended = False  # our half ended (END_STREAM or RST_STREAM)
        self.client_ended = False
        self.received = 0
        self.expected = request.content_length

    def __repr__(self) -> str:
        return (
            f"H2Stream({self.sid}, {self.request.method.decode()} {self.request.target[:60]!r}, "
            f"responded={self.responded}, ended={self.ended}, tunnel={self.tunnel is not None})"
        )

    # -- the client's side (called by its StreamOwner) --------------------------------------------
    def start(self, ended: bool) -> None:
        """The request's HEADERS arrived (``ended``: with END_STREAM, no body follows)."""
        req = self.request
        if ended or req.websocket:
            framing = NONE
        else:
            framing = CHUNKED if req.content_length is None else LENGTH
        head = RequestHead(
            req.method,
            req.target,
            "2",  # (the backend's Via says the request came over HTTP/2, RFC 9110 §7.6.3)
            req.headers,
            req.lnames,
            True,
            framing,
            req.content_length or 0,
            req.websocket,
            req.expect_continue,  # answered here once a backend is ready, as on HTTP/1.1
        )
        # the selected build's Exchange (compiled unless LIMPET_NO_EXTENSIONS), as HTTP/1.1 has
        exchange = self.active = selected.Exchange(self, head)
        if req.websocket:
            # RFC 8441 §5: no request body; DATA before the backend's 101 is the tunnel's
            # first bytes, held (unacknowledged: the window bounds them) until it exists
            exchange.body_complete()
            self.pause_for("upgrade")
            exchange.start()
            if ended:
                self.client_end()
        elif ended:
            self.client_end()
        elif exchange.ready():
            exchange.start()

    def client_data(self, data: bytes) -> None:
        self.received += len(data)
        if self.paused:
            self.unacked += len(data)
        else:
            self.conn.core.ack(self.sid, len(data))
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.from_client(data)
            return
        exchange = self.active
        if exchange is None:
            return  # answered already (a local answer, or the backend answered early)
        if exchange.upgrade:
            exchange.early_data += data
            return
        if self.expected is not None and self.received > self.expected:
            self.malformed("more DATA than content-length")
            return
        exchange.feed_body(data)
        if not exchange.started:
            exchange.start()

    def client_trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        """The client's trailer fields (its END_STREAM comes with them): they end the chunked
        body the backend gets, as its trailer section (RFC 9112 §7.1.2)."""
        exchange = self.active
        try:
            lines = messages.request_trailers(fields, self.ctx.limits.max_headers)
        except messages.Malformed as exc:
            log.info("h2 %s stream %d: malformed trailers: %s", self.client_ip, self.sid, exc)
            self.malformed(str(exc))
            return
        except messages.Unsupported as exc:
            if exchange is not None:
                exchange.abort_upstream()
            self.refuse(exc.status, exc.reason)
            return
        if exchange is None or exchange.upgrade or not lines:
            return
        if exchange.body_chunked:
            exchange.last_chunk = b"0\r\n" + lines + b"\r\n"
        else:
            # a body framed by content-length has no trailer section in HTTP/1.1; RFC 9110
            # §6.5.1 lets a recipient discard trailers, and this says so
            log.info(
                "h2 %s stream %d: trailers dropped: the request has a content-length",
                self.client_ip,
                self.sid,
            )

    def client_end(self) -> None:
        self.client_ended = True
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.client_eof()
            self.conn.maybe_done(self)
            return
        exchange = self.active
        if exchange is not None and not exchange.upgrade:
            if self.expected is not None and self.received != self.expected:
                self.malformed("DATA shorter than content-length")
                return
            if not exchange.body_done:
                exchange.body_complete()
            if not exchange.started:
                exchange.start()
        self.conn.maybe_done(self)

    def client_reset(self) -> None:
        """The client reset the stream, or the connection is gone."""
        self.client_ended = self.ended = True
        self.give_back_window()
        self.resp_timer.cancel()
        tunnel, self.tunnel = self.tunnel, None
        if tunnel is not None:
            tunnel.client_lost()
        exchange, self.active = self.active, None
        if exchange is not None:
            exchange.downstream_lost()

    def malformed(self, why: str) -> None:
        """RFC 9113 §8.1.1: a stream error; nothing more of it goes upstream."""
        exchange, self.active = self.active, None
        if exchange is not None:
            exchange.abort_upstream()
        self.reset(PROTOCOL_ERROR)

    # -- what an Exchange calls on its downstream (limpet.proxy.sides.DownstreamSide) ----------
    def connected(self) -> bool:
        return not self.ended and self.conn.transport is not None

    def closing(self) -> bool:
        return False  # a stream's end is no connection's: the next stream is unaffected

    def answer_locally(self, exchange: object, status: int, reason: str) -> None:
        if self.active is exchange:
            self.refuse(status, reason)

    def cookies(self, values: list[bytes]) -> dict[str, str]:
        return self.conn.cookies(values)

    def cork(self) -> None:
        pass  # the connection flushes once per read from either side

    def flush(self) -> None:
        # at the end of the loop turn: what the streams of one connection got from their
        # backends in one turn leaves in one send, not one per stream
        self.conn.flush_soon()

    def write(self, data: bytes) -> None:
        """HTTP/1.1 response bytes from the Exchange, sent as HEADERS and DATA."""
        if self.ended:
            return
        events = self.parser.feed(data)
        last = len(events) - 1
        for i, (kind, value) in enumerate(events):
            if kind == HEAD:
                self.head(value)
            elif kind == BODY:
                if i < last and events[i + 1][0] == END and self.responded:
                    tail = self.backend_trailers()
                    if tail is None:
                        # the body's last piece carries END_STREAM (no empty DATA after it)
                        self.send_body(value, end=True)
                        return
                self.send_body(value)
            elif kind == END:
                if self.responded:
                    self.end_response(self.backend_trailers())
            elif kind == ERROR:
                self.reset()
                return

    def backend_trailers(self) -> list[tuple[bytes, bytes]] | None:
        """The trailer fields of the backend's chunked response, as HTTP/2 trailers, or None.

        The Exchange relays a response to its downstream as HTTP/1.1 bytes and ends a chunked
        one without trailers (HTTP/1.1 clients get none, RFC 9112 §7.1.2 lets a proxy drop
        them); the upstream connection's parser keeps them until its next response, and the
        Exchange still holds that connection while it writes the body's end.
        """
        exchange = self.active
        upstream = exchange.upstream if exchange is not None else None
        if upstream is None:
            return None
        fields = upstream.parser.trailers
        if not fields:
            return None
        return messages.response_trailers(fields) or None

    def head(self, head: ResponseHead) -> None:
        status = head.status
        websocket = self.request.websocket
        if 100 <= status < 200 and not (status == 101 and websocket):
            # RFC 9113 §8.1: any number of informational HEADERS (100, 103 Early Hints...)
            # may precede the final one; a 101 has no meaning on a stream (§8.6)
            if status != 101 and not self.responded and not self.ended:
                fields = messages.response_fields(status, head.headers)
                self.conn.core.respond(self.sid, fields, end=False)
            return  # (the parser reads the final head next)
        fields = messages.response_fields(status, head.headers, websocket=websocket)
        bodyless = self.request.method == b"HEAD" or status in (204, 304)
        self.responded = True
        self.conn.core.respond(self.sid, fields, end=bodyless)
        if bodyless:
            self.ended = True
            self.conn.maybe_done(self)

    def send_body(self, data: bytes, end: bool = False) -> None:
        if self.ended or not data:
            if end:
                self.end_response()
            return
        core = self.conn.core
        core.send(self.sid, data, end)
        if end:
            self.ended = True
            self.conn.maybe_done(self)
        elif not self.write_paused and core.pending(self.sid) > self.conn.h2limits.send_buffer:
            self.full()

    def end_response(self, trailers: list[tuple[bytes, bytes]] | None = None) -> None:
        """End our half: END_STREAM after the queued body, on a trailing HEADERS when the
        backend sent trailers."""
        if self.ended:
            return
        self.ended = True
        if trailers:
            self.conn.core.trailers(self.sid, trailers)
        else:
            self.conn.core.end(self.sid)
        self.conn.maybe_done(self)

    def reset(self, code: Any = None) -> None:
        if not self.ended or not self.client_ended:
            self.ended = self.client_ended = True
            core = self.conn.core
            core.reset(self.sid) if code is None else core.reset(self.sid, code)
            self.conn.flush_soon()  # (a backend's end or a timer, not a client read, may reset)
        self.conn.maybe_done(self)

    def refuse(self, status: int, reason: str) -> None:
        """A local answer on this stream; the connection and its other streams go on."""
        self.ctx.metrics.local_responses.labels(str(status)).inc()
        self.active = None
        if self.ended:
            return
        if self.responded:
            self.reset()  # mid-response: nothing valid can follow
            return
        self.answer(status, f"limpet: {reason}")

    def answer(self, status: int, text: str) -> None:
        body = (text.rstrip("\n") + "\n").encode()
        fields = [
            (b":status", b"%d" % status),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
        ]
        self.responded = True
        core = self.conn.core
        core.respond(self.sid, fields, end=False)
        core.send(self.sid, body, end=True)
        self.ended = True
        if not self.client_ended:
            # RFC 9113 §8.1: the answer is complete; the rest of the request is not wanted
            self.client_ended = True
            core.reset(self.sid, NO_ERROR)
        # a local answer comes from a read of the client's (flushed after it) or from outside
        # one: a failed connect, the response timeout; those must be sent too
        self.conn.flush_soon()
        self.conn.maybe_done(self)

    def exchange_done(self, exchange: object, keep_alive: bool) -> None:
        if exchange is not self.active:
            return
        self.active = None
        self.resp_timer.cancel()
        self.end_response()  # (a HEAD's answer has no END from the parser)
        if not self.client_ended:
            # the backend answered before the request body ended: the rest has nowhere to go
            self.reset(NO_ERROR)

    def close(self) -> None:
        """The Exchange gives up on the downstream (a truncated response): reset the stream."""
        if not self.ended:
            self.reset()

    def give_back_window(self) -> None:
        """Acknowledge what was held back: the stream is over, but the bytes still count
        against the connection's window (RFC 9113 §6.9), which would otherwise shrink for
        good with every stream that ends while its backend is slow."""
        if self.unacked:
            n, self.unacked = self.unacked, 0
            self.conn.core.ack(self.sid, n)

    def pause_for(self, reason: str) -> None:
        self.paused.add(reason)

    def resume_for(self, reason: str) -> None:
        paused = self.paused
        if reason in paused:
            paused.discard(reason)
            if not paused and self.unacked:
                n, self.unacked = self.unacked, 0
                self.conn.core.ack(self.sid, n)
                self.conn.flush()

    def start_tunnel(
        self, conn: UpstreamConnection, early: bytes, release: Callable[[], object]
    ) -> None:
        """After the backend's 101: the stream carries the WebSocket (RFC 8441 §5)."""
        self.state = TUNNEL
        self.active = None
        self.resp_timer.cancel()
        self.ctx.metrics.h2_websockets.inc()
        tunnel = self.tunnel = Tunnel(self.ctx, self.view, conn, release, upgraded=True)  # type: ignore[arg-type]
        tunnel.start(early)
        self.resume_for("upgrade")
        if self.write_paused:
            tunnel.client_full()
        if self.client_ended:
            tunnel.client_eof()

    # -- output pressure -------------------------------------------------------------------------
    def full(self) -> None:
        """Past the send buffer (or the connection's socket is full): stop reading the backend."""
        self.write_paused = True
        if self.tunnel is not None:
            self.tunnel.client_full()
            return
        upstream = self.active.upstream if self.active is not None else None
        if upstream is not None and upstream.transport is not None:
            upstream.transport.pause_reading()

    def drained(self) -> None:
        if not self.write_paused:
            return
        self.write_paused = False
        if self.tunnel is not None:
            self.tunnel.client_drained()
            return
        upstream = self.active.upstream if self.active is not None else None
        if upstream is not None and upstream.transport is not None:
            upstream.transport.resume_reading()
