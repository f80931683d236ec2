"""I/O: the downstream HTTP/1.1 protocol class and the Exchange that carries one request through.

``Downstream`` is an asyncio.Protocol fed by the wire core's request parser (limpet.proxy.wire:
one call per read, events out): no task per request on the keep-alive path, bodies streamed as
they arrive, pipelined requests queued (at most ``MAX_PIPELINE``) and answered in order. ``Exchange`` is one request/response: it asks the
route's affinity policy for a backend, takes an upstream connection, forwards the head and body,
and relays the response (adding the policy's Set-Cookie). After ``101`` both sides become a tunnel.

Flow control: each side's ``pause_writing`` pauses reading on the other side (asyncio's
high/low water marks on the transports decide when), so a slow reader never makes the proxy
buffer a whole body.

Two builds of this one file: this module is the pure-Python reference, ``limpet.proxy._chttp1``
the same source compiled by Cython (setup.py); limpet.proxy.builds picks one at import time with
the wire core's switch (``LIMPET_NO_EXTENSIONS=1``: pure Python).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from limpet.affinity.base import Pick, RequestFacts
from limpet.pool.health import HealthEvent
from limpet.proxy import engineio, goaway, retry, wire
from limpet.proxy.filters import NO_FILTER, ExchangeFilter
from limpet.proxy.headers import new_request_id, parse_cookies
from limpet.proxy.responses import CONTINUE, local_response
from limpet.proxy.states import (
    CONNECTING,
    EV_ABORT,
    EV_ATTACH,
    EV_END,
    EV_FINAL_HEAD,
    EV_HOLD,
    EV_INTERIM_HEAD,
    EV_LOCAL,
    EV_RETRY,
    EV_SENT,
    EV_START,
    EV_SWITCH,
    EX_LIVE,
    EX_RESPONSE_STARTED,
    EX_STEPS,
    HALF_CLOSED,
    HELD,
    QUEUED,
    READING,
    REFUSED,
    RESPONDING,
    SENDING,
    TUNNEL,
    WAITING,
    DownEvent,
    ExEvent,
    ExState,
    advance,
    ex_advance,
)
from limpet.proxy.tunnel import Tunnel
from limpet.proxy.wire import RequestParser
from limpet.proxy.wire.parser import BODY, CHUNKED, END, ERROR, HEAD, NONE, UPGRADE, RequestHead

try:
    import cython
except ImportError:  # the reference runs without Cython installed
    from limpet.proxy.wire import _cython_shim as cython  # type: ignore[no-redef,unused-ignore]

#: True in the build Cython compiled from this file (limpet.proxy._chttp1), False here
COMPILED: bool = cython.compiled

#: the fast path of this build (limpet.proxy.fast; the compiled twin takes the compiled one,
#: limpet.proxy._cfast, so a build never mixes the two)
fast: Any = importlib.import_module("limpet.proxy._cfast" if COMPILED else "limpet.proxy.fast")

if TYPE_CHECKING:
    from limpet.pool.model import BackendView
    from limpet.proxy.context import PoolRuntimeView, ProxyContext
    from limpet.proxy.sides import DownstreamSide
    from limpet.proxy.upstream import UpstreamConnection
    from limpet.proxy.wire.response import ResponseHead

#: request bodies read before the upstream connection is ready are held up to this, then the
#: downstream is paused (the water mark for buffering, not for the transports)
BODY_BUFFER_HIGH = 256 * 1024
#: unanswered pipelined requests parsed ahead; beyond this the downstream is not read (a client
#: that sends requests and never reads the answers holds this many, not thousands)
#: how long an idle keep-alive connection stays open once shutdown begins, so that a request
#: already on its way is answered (with Connection: close) rather than reset; bounded by the
#: drain deadline (timeouts.shutdown)
STOP_GRACE = 1.0
MAX_PIPELINE = 8
#: RequestFacts.cookies of a request without a Cookie header (shared: never mutated)
NO_COOKIES: Mapping[str, str] = MappingProxyType({})
#: (as module constants: an Enum member read through its class costs ~0.1 µs; states.py says why)
PASSIVE_OK, PASSIVE_FAIL = HealthEvent.PASSIVE_OK, HealthEvent.PASSIVE_FAIL
#: Downstream.queue of a tunnel: no request follows an upgrade, and a deque is 760 bytes
NO_QUEUE: deque[Exchange] = deque(maxlen=0)
#: a request written to a backend is sent again only if it is one of these methods (or carries
#: Idempotency-Key) and has no body: the rule of Go's net/http (Request.isReplayable). PUT and
#: DELETE are idempotent by RFC 9110 §9.2.2, but a backend that read one may be acting on it
#: when the connection breaks, and a second copy racing the first is not harmless
REPLAYABLE = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})
#: the end of a chunked body without trailers (RFC 9112 §7.1)
LAST_CHUNK = b"0\r\n\r\n"
#: the route and the pick of a request, made once (by the fast path, or by Exchange.start)
Picked = tuple["PoolRuntimeView | None", "Pick | None"]


def request_facts(
    down: DownstreamSide,
    headers: list[tuple[bytes, bytes]],
    lnames: list[bytes],
    path: bytes,
    query: bytes,
) -> RequestFacts:
    """What the route's policy sees of a request."""
    cookies: Mapping[str, str]
    if b"cookie" in lnames:
        values = [headers[i][1] for i in range(len(lnames)) if lnames[i] == b"cookie"]
        cookies = down.cookies(values)
    else:
        cookies = NO_COOKIES
    return RequestFacts(
        down.client_ip,
        path.decode("latin-1"),
        query.decode("latin-1"),
        LazyHeaders(headers, lnames),
        cookies,
        time.time(),
    )


def route_and_pick(
    down: DownstreamSide, headers: list[tuple[bytes, bytes]], lnames: list[bytes], url: bytes
) -> Picked:
    """The route of a request (by Host and path) and its policy's pick; (None, None): no route."""
    host = headers[lnames.index(b"host")][1] if b"host" in lnames else b""
    path, _, query = url.partition(b"?")
    route_path = path if path.startswith(b"/") else b"/"  # "*" (OPTIONS) routes as "/"
    runtime = down.ctx.route(host.decode("latin-1"), route_path.decode("latin-1"))
    if runtime is None:
        return None, None
    return runtime, runtime.pick(request_facts(down, headers, lnames, path, query))


class Deadline:
    """A re-armable deadline that costs no loop timer per re-arm on the keep-alive path.

    ``arm`` moves the deadline; the loop timer is replaced only when the new deadline is
    earlier than the scheduled one. A later one is found when the timer fires, which then
    sleeps again for the rest. ``disarm`` only forgets the callback. Per request this saves
    a ``call_later`` and a ``cancel`` for each of the header, idle and response timeouts
    (they showed in the profile).
    """

    __slots__ = ("callback", "deadline", "handle", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.handle: asyncio.TimerHandle | None = None
        self.deadline = 0.0
        self.callback: Callable[[], object] | None = None

    def arm(self, delay: float, callback: Callable[[], object]) -> None:
        deadline = self.loop.time() + delay
        self.deadline = deadline
        self.callback = callback
        handle = self.handle
        if handle is None or handle.when() > deadline:
            if handle is not None:
                handle.cancel()
            self.handle = self.loop.call_at(deadline, self._fire)

    def disarm(self) -> None:
        self.callback = None

    def retarget(self, callback: Callable[[], object]) -> None:
        """The same deadline, if armed, calls ``callback`` instead."""
        if self.callback is not None:
            self.callback = callback

    def cancel(self) -> None:
        self.callback = None
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _fire(self) -> None:
        self.handle = None
        callback = self.callback
        if callback is None:
            return
        if self.loop.time() < self.deadline:
            self.handle = self.loop.call_at(self.deadline, self._fire)
            return
        self.callback = None
        callback()


class LazyHeaders(Mapping[str, str]):
    """RequestFacts.headers for a policy that asks (hash:header): lower-case str names, repeated
    fields joined with ", ". Decoded on first use only; the cookie policy never asks."""

    __slots__ = ("_dict", "_headers", "_lnames")

    def __init__(self, headers: list[tuple[bytes, bytes]], lnames: list[bytes]) -> None:
        self._headers = headers
        self._lnames = lnames
        self._dict: dict[str, str] | None = None

    def _decoded(self) -> dict[str, str]:
        d = self._dict
        if d is None:
            d = self._dict = {}
            for lname, (_, value) in zip(self._lnames, self._headers, strict=True):
                name, svalue = lname.decode("latin-1"), value.decode("latin-1")
                d[name] = d[name] + ", " + svalue if name in d else svalue
        return d

    def __getitem__(self, key: str) -> str:
        return self._decoded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __repr__(self) -> str:
        return f"LazyHeaders({self._decoded()!r})"


class BadRequest(Exception):
    """The downstream sent something we must refuse (RFC 9112 §2.2: respond 400 and close)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Downstream(asyncio.Protocol):
    """One client connection: parse requests, run exchanges in order, tunnel after an upgrade.

    It is each exchange's ``DownstreamSide`` (limpet.proxy.sides): an exchange reaches the
    client only through the members listed there.
    """

    #: offer each read to the fast path first (limpet.proxy.fast); False: every request takes
    #: the reference Exchange (LIMPET_NO_FASTPATH=1, and the differential tests' reference)
    fast_path = not os.environ.get("LIMPET_NO_FASTPATH")

    def __init__(self, ctx: ProxyContext) -> None:
        self.ctx = ctx
        self.loop = ctx.loop
        self.limits = ctx.limits
        self.timeouts = ctx.timeouts
        self.transport: asyncio.Transport | None = None
        self._client_ip = ""
        self.client_ip_bytes = b""  # the same, encoded once for X-Forwarded-For
        self.scheme = b"http"  # b"https" on a TLS listener (connection_made)
        self.parser = RequestParser(
            self.limits.max_header_bytes, self.limits.max_headers, MAX_PIPELINE
        )
        self.active: Exchange | None = None  # being answered
        self.receiving: Exchange | None = None  # request body being read
        self.queue: deque[Exchange] = deque()  # pipelined, waiting their turn
        self.paused: set[str] = set()
        self.write_paused = False
        #: READING / HALF_CLOSED / UPGRADING / TUNNEL / REFUSED / CLOSED (limpet.proxy.states)
        self.state = READING
        self.tunnel: Tunnel | None = None  # after 101 (limpet.proxy.tunnel)
        self.pending_refusal: tuple[int, str] | None = None
        self.out: list[bytes] | None = None  # corked downstream writes (see cork)
        self._timer = Deadline(self.loop)  # header, idle and lingering close
        self.resp_timer = Deadline(self.loop)  # the active exchange's response timeout
        self._head_started = False  # bytes of a head arrived while idle (header timer armed)
        self._handling = False  # inside handle(): exchange_done must not feed the parser
        self._cookie_key: list[bytes] | None = None  # the last request's Cookie values...
        self._cookie_jar: dict[str, str] = {}  # ...parsed (a keep-alive client repeats them)
        #: each read goes through it: the fast path takes a common request whole, or hands the
        #: parsed events to handle() (limpet.proxy.fast)
        self.fast = fast.FastPath(self) if self.fast_path else fast.ReferencePath(self)

    def __repr__(self) -> str:
        return (
            f"Downstream(client={self.client_ip!r}, state={self.state.name}, "
            f"active={self.active is not None}, "
            f"queued={len(self.queue)}, tunnel={self.tunnel is not None})"
        )

    @property
    def client_ip(self) -> str:
        """The client's address (the PROXY protocol's source, when the listener accepts it)."""
        return self._client_ip

    @client_ip.setter
    def client_ip(self, ip: str) -> None:
        self._client_ip = ip
        self.client_ip_bytes = ip.encode()

    # -- connection lifecycle -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if peer else ""
        # TLS ended on this listener (asyncio's SSL transport has a context): X-Forwarded-Proto
        self.scheme = b"https" if transport.get_extra_info("sslcontext") is not None else b"http"
        server = self.ctx
        server.connections.add(self)
        server.metrics.downstream_connections.inc()
        if len(server.connections) > self.limits.max_connections or server.stopping:
            server.metrics.local_responses.labels("503").inc()
            transport.write(local_response(503, "limpet: too many connections; retry later"))  # type: ignore[attr-defined]
            transport.close()
            return
        self._arm(self.timeouts.header, self._on_header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.ctx.connections.discard(self)
        self.ctx.metrics.downstream_connections.dec()
        self._timer.cancel()
        self.resp_timer.cancel()
        tunnel, self.tunnel = self.tunnel, None
        if tunnel is not None:
            tunnel.client_lost()
        for exchange in (self.active, self.receiving, *self.queue):
            if exchange is not None:
                exchange.downstream_lost()
        self.active = self.receiving = None
        self.queue.clear()
        self.transport = None
        self.state = advance(self.state, DownEvent.LOST)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state is TUNNEL:
            if self.tunnel is not None:
                self.tunnel.from_client(data)
            return
        if state is REFUSED:
            return  # a refusal was sent: read and drop until the client closes
        self.fast.offer(data)

    def handle(self, events: list[tuple[int, object]], picked: Picked | None = None) -> None:
        """Act on the wire core's events for one read, in order (``picked``: the route and pick
        the fast path made for the first request in them before it declined)."""
        if events and events[-1][0] == ERROR:
            # a request refused in this read never starts, even if its head parsed (a bad
            # chunk-size line after a good head): nothing of it reaches a backend
            last = len(events) - 1
            while last > 0 and events[last - 1][0] not in (HEAD, END):
                last -= 1
            if last > 0 and events[last - 1][0] == HEAD:
                events = events[: last - 1] + events[-1:]
        self._handling = True
        try:
            for kind, value in events:
                if kind == BODY:
                    receiving = self.receiving
                    if receiving is not None:
                        receiving.feed_body(value)  # type: ignore[arg-type]
                        if not receiving.started and receiving is self.active:
                            receiving.start()  # its first chunk line was valid
                elif kind == HEAD:
                    self.on_head(value, picked)  # type: ignore[arg-type]
                    picked = None
                elif kind == END:
                    self.on_message_complete()
                elif kind == UPGRADE:
                    self._upgrade_requested(value)  # type: ignore[arg-type]
                else:
                    refusal: tuple[int, str] = value  # type: ignore[assignment]
                    self.parse_failed(*refusal)
                    return
        finally:
            self._handling = False
        parser = self.parser
        if parser.stalled:
            self.pause_for("pipeline")
        elif (
            self.active is None
            and self.receiving is None
            and parser.buffered
            and not self._head_started
        ):
            self._head_started = True  # a head began: it must end within the header timeout
            self._arm(self.timeouts.header, self._on_header_timeout)

    def parse_failed(self, status: int, reason: str) -> None:
        """The byte stream is broken from here on: answer what came before, then refuse."""
        broken, self.receiving = self.receiving, None
        self.pause_for("refused")
        if broken is not None and broken is not self.active:
            self.queue.remove(broken)  # never started: nothing of it was forwarded
            broken = None
        if broken is not None:
            # the head went upstream but the body is broken: the backend never gets the rest
            broken.abort_upstream()
            self.refuse(status, reason)
        elif self.active is None:
            self.refuse(status, reason)
        else:
            self.pending_refusal = (status, reason)

    def eof_received(self) -> bool | None:
        state = self.state
        if state is REFUSED:
            return False
        if state is TUNNEL and self.tunnel is not None:
            return self.tunnel.client_eof()  # passed on to the backend, as in --mode tcp
        if self.active is not None:
            if self.ctx.stopping:
                # shutting down: a half-closed client is not waited for (a long-poll may hold
                # its response for half a minute); the request is dropped, nothing is retried
                return None
            # a client may half-close after sending its request; let the response finish
            self.state = advance(state, DownEvent.CLIENT_EOF)
            return True
        return None

    def drain(self) -> None:
        """Shutdown has begun (goaway.Stoppable): tell keep-alive clients, close what nobody
        waits for.

        A half-closed client (it sent its request then FIN, as a socket.io long-poll client
        that exited does) is closed at once: it would keep the process up until the deadline
        for a response nobody needs. Live exchanges finish with ``Connection: close`` (see
        response_bytes). An idle keep-alive connection is not closed at once: a client may have
        sent its next request already, and a close would meet it with a reset (HTTP/1.1 has no
        GOAWAY). It stays open for STOP_GRACE; a request that comes is answered with
        ``Connection: close``, and the connection closes after that answer or the grace.
        """
        if self.transport is None or self.tunnel is not None:
            return
        if self.state is HALF_CLOSED:
            self.transport.close()
        elif self.active is None and self.receiving is None and not self.parser.buffered:
            self._arm(min(STOP_GRACE, self.timeouts.shutdown), self._on_header_timeout)

    def go_away(self) -> None:
        """The drain deadline passed (goaway.Stoppable): 1001 to a WebSocket, else abort."""
        goaway.close(self.transport, self.tunnel)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.tunnel is not None:
            self.tunnel.client_full()
            return
        conn = self.active.upstream if self.active else None
        if conn is not None and conn.transport is not None:
            conn.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.tunnel is not None:
            self.tunnel.client_drained()
            return
        conn = self.active.upstream if self.active else None
        if conn is not None and conn.transport is not None:
            conn.transport.resume_reading()
        if self.active is None and self.queue:
            self.advance()

    def pause_for(self, reason: str) -> None:
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
        self.paused.add(reason)

    def resume_for(self, reason: str) -> None:
        if reason in self.paused:
            self.paused.discard(reason)
            if not self.paused and self.transport is not None:
                self.transport.resume_reading()

    # -- timers ------------------------------------------------------------------------------
    def _arm(self, delay: float, callback: Callable[[], object]) -> None:
        self._timer.arm(delay, callback)

    def _disarm(self) -> None:
        self._timer.disarm()

    def _on_header_timeout(self) -> None:
        if self.active is None and self.transport is not None:
            if self.parser.buffered:
                self.refuse(408, "request head not received in time")
            else:
                self.transport.close()  # idle keep-alive connection: close quietly

    # -- wire core events ----------------------------------------------------------------------
    def on_head(self, head: RequestHead, picked: Picked | None = None) -> None:
        self._head_started = False
        if self.active is None and self.receiving is None:
            self._disarm()
        exchange = Exchange(self, head)
        self.receiving = exchange
        if self.active is None and not self.queue:
            self.active = exchange
            if exchange.ready():
                exchange.start(picked)
        else:
            self.queue.append(exchange)

    # -- what the fast path asks of its connection (limpet.proxy.fast.FastSide) -----------------
    def head_arrived(self) -> None:
        """A whole head arrived on an idle connection: the header and idle timers stop (as in
        on_head)."""
        self._head_started = False
        self._disarm()

    def route_and_pick(self, head: RequestHead) -> Picked:
        return route_and_pick(self, head.headers, head.lnames, head.target)

    def adopt(
        self,
        head: RequestHead,
        runtime: PoolRuntimeView,
        pick: Pick,
        conn: UpstreamConnection,
        state: ExState,
        status: int,
        framing: tuple[bool, bool, bool],
        taken: object,
    ) -> Exchange:
        """The reference Exchange of a request the fast path (``taken``) sent whole on ``conn``,
        in the state the reference would be in (``framing``: the response's resp_chunked,
        resp_close and until_close); the fast path hands over anything rare to it."""
        exchange = Exchange(self, head)
        exchange.runtime = runtime
        exchange.pick = pick
        exchange.upstream = conn
        exchange.body_done = True
        exchange.body_sent = head.framing != NONE
        exchange.state = state
        exchange.status = status
        exchange.resp_chunked, exchange.resp_close, exchange.until_close = framing
        conn.exchange = exchange
        if self.active is taken:  # (not after a refusal: the reference's is not active either)
            self.active = exchange
        self.resp_timer.retarget(exchange.response_timeout)
        return exchange

    def on_message_complete(self) -> None:
        exchange, self.receiving = self.receiving, None
        if exchange is not None:
            exchange.body_complete()
            if not exchange.started and exchange is self.active:
                exchange.start()  # a chunked body that was only its last chunk

    # -- exchanges -----------------------------------------------------------------------------
    def _upgrade_requested(self, early: bytes) -> None:
        exchange = self.active
        if exchange is None or not exchange.upgrade:
            self.refuse(400, "unexpected upgrade")
            return
        exchange.early_data += early
        # no more HTTP on this connection: what follows belongs to the upgraded protocol
        self.state = advance(self.state, DownEvent.UPGRADE_REQUESTED)
        self.pause_for("upgrade")

    def exchange_done(self, exchange: object, keep_alive: bool) -> None:
        """``exchange`` has written its whole response: next pipelined request, or idle."""
        active = self.active
        if active is None or exchange is not active or self.transport is None:
            return
        self.active = None
        if (
            not keep_alive
            or self.state is HALF_CLOSED
            or active.upgrade
            or self.receiving is active
        ):
            # (the backend answered before the request body ended: the rest of the body
            # has nowhere to go, so this connection cannot carry another request)
            self.close()
            return
        parser = self.parser
        parser.answered()
        self.advance()
        if parser.buffered and not self._handling and self.transport is not None:
            # pipelined heads held while MAX_PIPELINE were unanswered: parse the next one now
            self.handle(parser.feed(b""))
        if not parser.stalled:
            self.resume_for("pipeline")

    def advance(self) -> None:
        """Start the next queued exchange, unless the client is not reading what we answer.

        While the downstream transport is over its high-water mark, no new response is made
        (resume_writing calls this again): a client that pipelines and never reads holds at
        most the transport's buffer and MAX_PIPELINE parsed requests.
        """
        if self.active is not None or self.transport is None or self.state is REFUSED:
            return
        if self.write_paused and self.queue:
            return
        if self.pending_refusal is not None and not self.queue:
            self.refuse(*self.pending_refusal)
            return
        if self.queue:
            self.active = exchange = self.queue.popleft()
            if exchange.ready():
                exchange.start()
        elif self.receiving is None:
            self._arm(self.timeouts.idle, self._on_header_timeout)

    def start_tunnel(
        self, conn: UpstreamConnection, early: bytes, release: Callable[[], object]
    ) -> None:
        """After ``101``: bytes flow both ways untouched (limpet.proxy.tunnel, as in --mode
        tcp); ``release`` gives the backend's open count back when the tunnel ends."""
        assert self.transport is not None
        client_ended = self.state is HALF_CLOSED  # FIN before the 101
        self.state = advance(self.state, DownEvent.SWITCHED)
        self.active = None
        # the tunnel keeps its own idle timer; cancel (not disarm) ours, or their TimerHandles
        # stay in the loop until the header and response deadlines (1.2 KB per idle WebSocket)
        self._timer.cancel()
        self.resp_timer.cancel()
        self.queue = NO_QUEUE
        self.paused.clear()
        self.tunnel = Tunnel(self.ctx, self.transport, conn, release, upgraded=True)
        self.tunnel.start(early)
        if self.write_paused:
            self.tunnel.client_full()
        self.transport.resume_reading()
        if client_ended:
            self.tunnel.client_eof()

    def refuse(self, status: int, reason: str) -> None:
        """Answer a local error and close: the request is never forwarded.

        RFC 9112 §9.6: close the write side first and read (discarding) for a moment, so the
        client receives the response instead of a reset caused by its own unread bytes.
        """
        self.ctx.metrics.local_responses.labels(str(status)).inc()
        transport = self.transport
        if transport is None or self.state is REFUSED:
            return
        if self.active is not None and self.active.response_started:
            transport.abort()  # mid-response: nothing valid can follow
            return
        self.write(local_response(status, f"limpet: {reason}"))
        self.flush()
        self.state = advance(self.state, DownEvent.REFUSE)
        self.active = None
        self.queue.clear()
        if transport.can_write_eof():
            transport.write_eof()
            self.paused.clear()
            transport.resume_reading()
            self._arm(2.0, self.close)
        else:  # pragma: no cover - TCP transports can always half-close
            self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.flush()
            self.transport.close()

    def answer_locally(self, exchange: object, status: int, reason: str) -> None:
        """Refuse with ``status`` if ``exchange`` is the one being answered (a queued one
        is answered in its turn, or dropped with the connection)."""
        if self.active is exchange:
            self.refuse(status, reason)

    def connected(self) -> bool:
        return self.transport is not None

    def closing(self) -> bool:
        return self.state is HALF_CLOSED or self.ctx.stopping

    # -- coalesced writes ----------------------------------------------------------------------
    def cork(self) -> None:
        """Collect downstream writes until ``flush``: a response head and a small body that
        arrive in one upstream read leave in one send (one syscall instead of two or three)."""
        if self.out is None:
            self.out = []

    def cookies(self, values: list[bytes]) -> dict[str, str]:
        """The request's cookies, parsed once per distinct Cookie header on this connection."""
        if values != self._cookie_key:
            self._cookie_jar = parse_cookies([v.decode("latin-1") for v in values])
            self._cookie_key = values
        return self._cookie_jar

    def write(self, data: bytes) -> None:
        out = self.out
        if out is not None:
            out.append(data)
        elif self.transport is not None:
            self.transport.write(data)

    def flush(self) -> None:
        out, self.out = self.out, None
        if out and self.transport is not None:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])


class Exchange:
    """One request and its response, from pick to the last byte (or to the tunnel).

    Where it is lives in ``state`` (limpet.proxy.states: ExState, stepped only through the
    table by ``step``); the response timeout runs exactly while the state is WAITING. Beside
    the state it keeps the request's facts that decide a retry (``body_done``, ``body_sent``,
    ``retried_stale``) and the framing chosen for the response.
    """

    __slots__ = (
        "body_buffer",
        "body_buffered",
        "body_chunked",
        "body_done",
        "body_sent",
        "ctx",
        "down",
        "early_data",
        "expect_continue",
        "failed",
        "filter",
        "headers",
        "keep_alive",
        "last_chunk",
        "lnames",
        "method",
        "pick",
        "replayable",
        "resp_chunked",
        "resp_close",
        "retried_stale",
        "runtime",
        "state",
        "status",
        "until_close",
        "upgrade",
        "upstream",
        "url",
        "version",
    )

    def __init__(self, down: DownstreamSide, head: RequestHead) -> None:
        self.down = down
        self.ctx = down.ctx
        self.method = head.method
        self.url = head.target  # (origin-form: the wire core rewrote an absolute-form one)
        self.version = head.version
        self.headers = head.headers
        self.keep_alive = head.keep_alive
        #: lower-cased names, parallel to headers (each name is lowered once, by the wire core)
        self.lnames = head.lnames
        self.upgrade = head.upgrade
        self.expect_continue = head.expect_continue
        # the wire core accepts only "chunked" as the (only) coding of a request
        self.body_chunked = head.framing == CHUNKED
        #: may be sent again after it was written (see REPLAYABLE): no body, and a safe method
        #: or an Idempotency-Key (draft-ietf-httpapi-idempotency-key-header)
        self.replayable = head.framing == NONE and (
            head.method in REPLAYABLE or b"idempotency-key" in head.lnames
        )
        self.body_buffer: list[bytes] = []
        self.body_buffered = 0
        self.body_done = False
        self.body_sent = False
        #: what ends a chunked request body upstream: an HTTP/2 client's trailers go in it
        self.last_chunk = LAST_CHUNK
        self.early_data = b""
        self.runtime: PoolRuntimeView | None = None
        self.pick: Pick | None = None
        self.upstream: UpstreamConnection | None = None
        self.failed: set[str] = set()
        self.retried_stale = False
        self.state = QUEUED
        self.resp_chunked = False
        self.resp_close = False
        self.until_close = False
        self.status = 0
        #: optional behaviour (Engine.IO sid rewriting) through fixed hooks; see filters.py
        self.filter: ExchangeFilter = NO_FILTER

    def __repr__(self) -> str:
        backend = self.pick.backend.id if self.pick and self.pick.backend else None
        return f"Exchange({self.method.decode()} {self.url[:60]!r}, backend={backend!r}, status={self.status})"

    # -- state ---------------------------------------------------------------------------------
    def step(self, event: ExEvent) -> None:
        """Take one step of the table; entering WAITING arms the response timeout (it runs
        from when the whole request was sent, not while the client is still uploading: a
        slow, steady upload is no backend's fault) and leaving WAITING disarms it."""
        old = self.state
        # the table is the source of truth; a step it does not list raises (ex_advance says why)
        new = EX_STEPS[old].get(event) or ex_advance(old, event)
        self.state = new
        if new is WAITING:
            if old is not WAITING:
                self.down.resp_timer.arm(self.ctx.timeouts.response, self.response_timeout)
        elif old is WAITING:
            self.down.resp_timer.disarm()

    @property
    def started(self) -> bool:
        """Its turn came (it left QUEUED)."""
        return self.state is not QUEUED

    @property
    def response_started(self) -> bool:
        """A response head went downstream: a local answer can no longer be sent."""
        return self.state in EX_RESPONSE_STARTED

    # -- request side --------------------------------------------------------------------------
    def ready(self) -> bool:
        """May this request go to a backend yet? A chunked one waits for its first chunk line
        (a bad one is refused before anything is forwarded), unless the client waits for our
        100 Continue before it sends the body."""
        return (
            not self.body_chunked
            or self.expect_continue
            or self.body_done
            or self.body_sent
            or bool(self.body_buffer)
        )

    def start(self, picked: Picked | None = None) -> None:
        """Choose the backend (the route's policy decides) and get a connection to it
        (``picked``: the route and pick were made already, by the fast path)."""
        self.step(EV_START)
        runtime, pick = (
            route_and_pick(self.down, self.headers, self.lnames, self.url)
            if picked is None
            else picked
        )
        if runtime is None or pick is None:
            self.local(404, "no route for this host and path")
            return
        self.runtime = runtime
        self.choose(pick)

    def facts(self, path: bytes, query: bytes) -> RequestFacts:
        return request_facts(self.down, self.headers, self.lnames, path, query)

    def choose(self, pick: Pick) -> None:
        if not engineio.admit(self, pick):  # --affinity engineio: unknown session -> 400
            return
        backend = pick.backend
        if backend is None:
            self.local(503, "no healthy backend can serve this request")
            return
        self.pick = pick
        assert self.runtime is not None
        upstreams = self.runtime.upstreams[backend.id]
        # a request that must not be sent twice goes on a connection that cannot be in the
        # middle of the backend's keep-alive close (upstream.UpstreamPool.take_idle)
        conn = upstreams.take_idle(self.replayable)
        if conn is not None:
            self.attach(conn)
        else:
            self.ctx.spawn(self.connect(backend))

    async def connect(self, backend: BackendView) -> None:
        assert self.runtime is not None
        try:
            conn = await self.runtime.upstreams[backend.id].connect(self.ctx.timeouts.connect)
        except (TimeoutError, OSError) as exc:
            self.connect_failed(backend, exc)
            return
        if self.state is not CONNECTING or not self.down.connected():
            # the client left, or its request was refused, while we connected: nothing of it
            # goes upstream
            conn.release(keep_alive=True)
            return
        self.attach(conn)

    def connect_failed(self, backend: BackendView, exc: BaseException | None) -> None:
        """A backend refused or timed out: count it against the backend and repin once."""
        runtime = self.runtime
        assert runtime is not None
        another = retry.connect_failed(runtime, self.ctx.metrics, backend.id, self.failed)
        if self.state is not CONNECTING:
            return  # given up meanwhile (the client left or its request broke)
        if self.body_sent or not another or not self.down.connected():
            self.local(502, f"backend {backend.id} is unreachable")
            return
        retry.repinned(runtime, self.ctx.metrics)
        path, _, query = self.url.partition(b"?")
        # choose() answers a pick without a backend (503, or engineio's Session ID unknown)
        self.choose(runtime.pick(self.facts(path, query), exclude=self.failed))

    def attach(self, conn: UpstreamConnection) -> None:
        """Send the request head (and what body we hold) on ``conn``."""
        assert self.runtime is not None and self.pick is not None
        self.step(EV_ATTACH)
        self.upstream = conn
        conn.exchange = self
        self.runtime.opened(conn.backend_id, self.pick)
        transport = conn.transport
        assert transport is not None
        transport.write(self.request_head())
        if self.expect_continue and not self.body_done and self.down.connected():
            # we answer the expectation ourselves once a backend is ready (RFC 9110 §10.1.1);
            # the Expect header is not forwarded, so the backend never sends its own 100
            self.down.write(CONTINUE)
        if self.body_buffer:
            transport.write(b"".join(self.body_buffer))
            self.body_sent = True
            self.body_buffer.clear()
            self.body_buffered = 0
            self.down.resume_for("buffer")
        if self.body_done and self.body_chunked:
            transport.write(self.last_chunk)
        if self.down.write_paused:
            transport.pause_reading()
        if self.body_done:
            self.step(EV_SENT)

    def request_head(self) -> bytes:
        """The head for the backend: the wire core rewrites it (limpet.proxy.wire.rewrite)."""
        down = self.down
        ctx = self.ctx
        drop = wire.hop_by_hop(self.headers, self.lnames)
        url, drop = self.filter.request_head(self.url, drop)
        upstream = self.upstream
        return wire.request_head(
            self.method,
            url,
            self.headers,
            self.lnames,
            drop,
            ctx.trust_forwarded,
            down.client_ip_bytes,
            down.scheme,
            ctx.request_id_name,
            ctx.request_id_lower,
            # RFC 9110 §7.6.3: Via names the protocol the request was received with
            ctx.via_h2 if self.version == "2" else ctx.via,
            upstream.pool.address_bytes if upstream is not None else b"",
            self.upgrade,
            self.body_chunked,
            self.expect_continue,
            new_request_id,
        )

    def feed_body(self, data: bytes) -> None:
        conn = self.upstream
        if self.body_chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        if conn is not None and conn.transport is not None:
            conn.transport.write(data)
            self.body_sent = True
        else:
            self.body_buffer.append(data)
            self.body_buffered += len(data)
            if self.body_buffered > BODY_BUFFER_HIGH:
                self.down.pause_for("buffer")

    def body_complete(self) -> None:
        self.body_done = True
        conn = self.upstream
        if conn is not None and conn.transport is not None:
            if self.body_chunked:
                conn.transport.write(self.last_chunk)
            if self.state is SENDING:  # (not when the backend answered already)
                self.step(EV_SENT)

    # -- response side ---------------------------------------------------------------------
    def response_head(self, head: ResponseHead, conn: UpstreamConnection) -> None:
        status = head.status
        reason = head.reason
        headers = head.headers
        if 100 <= status < 200 and status != 101:
            # interim responses (103 Early Hints...) are relayed; the final one follows
            self.step(EV_INTERIM_HEAD)
            self.write_down(self.response_bytes(status, reason, headers, interim=True))
            return
        self.status = status
        runtime = self.runtime
        assert runtime is not None and self.pick is not None
        backend_id = conn.backend_id
        runtime.passive(backend_id, PASSIVE_FAIL if status >= 500 else PASSIVE_OK)
        runtime.count_response(backend_id, status)
        if status == 101 and self.upgrade:
            self.step(EV_SWITCH)
            self.write_down(self.response_bytes(status, reason, headers, interim=True))
            # the connection now belongs to the tunnel; it is counted open until the tunnel ends
            conn.exchange = None
            self.upstream = None
            self.down.start_tunnel(
                conn, self.early_data, functools.partial(runtime.closed, backend_id)
            )
            self.filter.tunnel(conn)
            return
        if self.filter.response_head(self, status, reason, headers):
            self.step(EV_HOLD)
            return
        self.step(EV_FINAL_HEAD)
        self.write_down(self.response_bytes(status, reason, headers))
        if self.method == b"HEAD":
            # RFC 9110 §9.3.2: no body follows, whatever Content-Length says; the response
            # parser is not told the request method, so the exchange ends here and the
            # connection is not reused (its parser would wait for the announced body)
            self.finish(conn, reuse=False)
            self.step(EV_END)
            self.down.exchange_done(self, self.keep_alive and not self.resp_close)

    def response_bytes(
        self,
        status: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        *,
        interim: bool = False,
    ) -> bytes:
        """The head for the client (the wire core rewrites it); notes the framing it chose."""
        pick = self.pick
        set_cookie = (
            pick.set_cookie.encode("latin-1") if pick is not None and pick.set_cookie else b""
        )
        head, until_close, rechunk, close = wire.response_head(
            status,
            reason,
            headers,
            self.ctx.via,
            set_cookie,
            interim,
            self.method == b"HEAD" or status in (204, 304),
            self.version == "1.0",
            self.resp_close or self.upgrade or self.down.closing(),
            self.keep_alive,
        )
        if not interim:
            self.until_close = until_close
            self.resp_chunked = rechunk
            self.resp_close = close
        return head

    def write_down(self, data: bytes) -> None:
        self.down.write(data)

    # -- what the upstream connection asks of the downstream (upstream.ExchangeSide) -----------
    def cork(self) -> None:
        self.down.cork()

    def flush(self) -> None:
        self.down.flush()

    def pause_downstream(self, reason: str) -> None:
        self.down.pause_for(reason)

    def resume_downstream(self, reason: str) -> None:
        self.down.resume_for(reason)

    def response_body(self, data: bytes) -> None:
        if self.method == b"HEAD":
            return
        if self.filter.body(data):
            return
        if self.resp_chunked:
            self.write_down(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self.write_down(data)

    def response_complete(self, conn: UpstreamConnection, upstream_keep_alive: bool) -> None:
        if self.state is not RESPONDING and self.state is not HELD:
            return  # an interim response ended (the final one follows), or a 101's
        self.filter.end(self)
        if self.resp_chunked:
            self.write_down(b"0\r\n\r\n")
        self.finish(conn, upstream_keep_alive and self.body_done and self.method != b"HEAD")
        self.step(EV_END)
        self.down.exchange_done(self, self.keep_alive and not self.resp_close)

    def finish(self, conn: UpstreamConnection | None, reuse: bool) -> None:
        """Give the upstream connection back (or close it) and account the exchange as closed."""
        if conn is not None and self.upstream is conn:
            self.upstream = None
            assert self.runtime is not None
            self.runtime.closed(conn.backend_id)
            if self.down.write_paused and conn.transport is not None:
                conn.transport.resume_reading()
            # a backend that stopped reading our request body no longer holds the client back
            self.down.resume_for("upstream")
            conn.release(keep_alive=reuse)

    def response_timeout(self) -> None:
        conn = self.upstream
        if conn is not None:
            self.finish(conn, reuse=False)
        self.local(504, "the backend did not answer in time")

    def upstream_lost(self, exc: BaseException | None) -> None:
        """The upstream connection closed before the response ended."""
        conn = self.upstream
        if conn is None:
            return
        reused = conn.reused
        self.finish(conn, reuse=False)
        if self.response_started:
            if self.until_close:  # the close is the end of this body, not an error
                if self.resp_chunked:
                    self.write_down(b"0\r\n\r\n")
                self.step(EV_END)
                self.down.exchange_done(self, self.keep_alive and not self.resp_close)
            else:
                self.step(EV_ABORT)
                self.down.close()  # truncated: the client must see the connection end
            return
        # the head (at least) was written when the connection was attached: the backend may
        # have read the request and acted on it. Go's net/http rule: send it again only if it
        # is replayable (no body; a safe method or an Idempotency-Key). Anything else is
        # answered 502 and never repeated, not even when the connection was a pooled one the
        # backend was closing: nothing tells that it had not read the request first
        backend = self.pick.backend if self.pick is not None else None
        if self.replayable and backend is not None:
            self.step(EV_RETRY)
            if reused and not self.retried_stale:
                # a keep-alive connection the backend had closed (RFC 9112 §9.3.1): once
                # more on a fresh connection to the same backend
                self.retried_stale = True
                self.ctx.spawn(self.connect(backend))
            else:
                self.connect_failed(backend, exc)  # elsewhere, as a failed connect is
            return
        if not reused and backend is not None and self.runtime is not None:
            # (a fresh connection closed without an answer is the backend's fault; a pooled
            # one may have met the backend's keep-alive close)
            self.runtime.passive(backend.id, PASSIVE_FAIL)
        self.local(502, "the backend closed the connection before answering")

    def upstream_failed(self, reason: str) -> None:
        conn = self.upstream
        self.finish(conn, reuse=False)
        if self.response_started:
            self.step(EV_ABORT)
            self.down.close()
        else:
            self.local(502, reason)

    def downstream_lost(self) -> None:
        conn = self.upstream
        if conn is not None:
            self.finish(conn, reuse=False)
        if self.state in EX_LIVE:
            self.step(EV_ABORT)

    def abort_upstream(self) -> None:
        conn = self.upstream
        if conn is not None:
            self.finish(conn, reuse=False)
            conn.abort()
        if self.state in EX_LIVE:
            self.step(EV_ABORT)

    def local(self, status: int, text: str) -> None:
        """Answer from the proxy itself and close the downstream connection."""
        self.step(EV_LOCAL)
        self.down.answer_locally(self, status, text)
