"""I/O: the fast path, which takes the common HTTP/1.1 exchange without the reference Exchange.

``Downstream.data_received`` (limpet.proxy.http1) offers every read here first. ``FastPath``
takes the read's request only when it is the common case, and carries it from the parsed head
to the end of its response without a reference ``Exchange`` or its state-table steps (one
``FastPath`` per connection, reused; the objects still made per request, by the parsers, the
policy and the runtime it calls, are listed in docs/benchmarks.md). Everything else goes to the reference ``Exchange``, which stays the
specification; docs/proxy.md lists which requests take which path. The fast path takes a
request when, and only when:

- the connection is idle (nothing being answered, queued or still uploading) and the read holds
  exactly one whole request: its head, and its whole Content-Length body if it has one (the
  wire core's events are HEAD, BODY..., END and nothing after);
- the request is not HEAD, asks no upgrade and no ``100-continue``, is not chunked;
- its route has a backend for it (a plain ``Pick``: not an Engine.IO decision, which needs its
  filter) and that backend has an idle pooled connection the reference would take too.

It declines before it has done anything the reference would not do the same way: the parse is
the connection's own parser (the reference's), and the read's events go to
``Downstream.handle`` with the route and pick it made, if any (so a policy is asked once, as in
the reference). Once it has
sent a request, anything rare on the response side (a 1xx or 101 head, a broken or lost
backend connection, the response timeout, the client leaving) hands the exchange over to a
reference ``Exchange`` built in the very state the reference would be in
(``Downstream.adopt``), which then does what the reference does.

What it does is the reference's work without its bookkeeping: the same wire-core calls for the
heads, the same pool and runtime calls in the same order, the same writes.
tests/unit/proxy/test_fast_path.py holds the two byte for byte alike (random scripts of client
bytes, backend bytes and events, cut at random), and tests/fuzz/protocol_fuzz.py drives both.

Two builds of this one file, as of http1.py: this pure-Python reference and
``limpet.proxy._cfast`` compiled by Cython (with ``_cfast.pxd``); the compiled ``_chttp1`` uses
the compiled one, the reference ``http1`` this one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from limpet.affinity.base import Pick
from limpet.pool.health import HealthEvent
from limpet.proxy import wire
from limpet.proxy.headers import new_request_id
from limpet.proxy.states import DONE, RESPONDING, WAITING, ExState
from limpet.proxy.wire.parser import BODY, END, HEAD, LENGTH, NONE

try:
    import cython
except ImportError:  # the reference runs without Cython installed
    from limpet.proxy.wire import _cython_shim as cython  # type: ignore[no-redef,unused-ignore]

#: True in the build Cython compiled from this file (limpet.proxy._cfast), False here
COMPILED: bool = cython.compiled

if TYPE_CHECKING:
    from collections import deque

    from limpet.proxy.context import PoolRuntimeView, ProxyContext
    from limpet.proxy.sides import ResponseTimer
    from limpet.proxy.upstream import UpstreamConnection
    from limpet.proxy.wire.parser import RequestHead, RequestParser
    from limpet.proxy.wire.response import ResponseHead

#: (module constants: an Enum member read through its class costs ~0.1 µs; states.py says why)
PASSIVE_OK, PASSIVE_FAIL = HealthEvent.PASSIVE_OK, HealthEvent.PASSIVE_FAIL
#: the methods the reference sends again after a lost connection (http1.REPLAYABLE; HEAD
#: never takes the fast path)
REPLAYABLE = frozenset({b"GET", b"OPTIONS", b"TRACE"})


class Adopted(Protocol):
    """The reference Exchange a handed-over request continues in (the calls made on it)."""

    def response_head(self, head: ResponseHead, conn: UpstreamConnection) -> None: ...
    def upstream_lost(self, exc: BaseException | None) -> None: ...
    def upstream_failed(self, reason: str) -> None: ...
    def response_timeout(self) -> None: ...
    def downstream_lost(self) -> None: ...


class FastSide(Protocol):
    """What the fast path uses of its HTTP/1.1 connection (http1.Downstream)."""

    ctx: ProxyContext
    parser: RequestParser
    active: object
    receiving: object
    queue: deque[object]
    client_ip_bytes: bytes
    scheme: bytes
    write_paused: bool

    @property
    def resp_timer(self) -> ResponseTimer: ...

    def handle(
        self,
        events: list[tuple[int, object]],
        picked: tuple[PoolRuntimeView | None, Pick | None] | None = None,
    ) -> None: ...
    def head_arrived(self) -> None: ...
    def route_and_pick(self, head: RequestHead) -> tuple[PoolRuntimeView | None, Pick | None]: ...
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
    ) -> Adopted: ...
    def closing(self) -> bool: ...
    def write(self, data: bytes) -> None: ...
    def cork(self) -> None: ...
    def flush(self) -> None: ...
    def pause_for(self, reason: str) -> None: ...
    def resume_for(self, reason: str) -> None: ...
    def exchange_done(self, exchange: object, keep_alive: bool) -> None: ...


class ReferencePath:
    """No fast path: every read's events go to the reference (LIMPET_NO_FASTPATH=1)."""

    __slots__ = ("down",)

    def __init__(self, down: FastSide) -> None:
        self.down = down

    def offer(self, data: bytes) -> None:
        down = self.down
        down.handle(down.parser.feed(data))


class FastPath:
    """The fast path of one downstream connection: at most one request at a time.

    While it carries a request it is the connection's ``active`` exchange (the members
    Downstream reads of one: ``upstream``, ``upgrade``, ``state``, ``response_started``,
    ``downstream_lost``, ``response_timeout``) and the upstream connection's ``exchange``
    (upstream.ExchangeSide).
    """

    #: never an upgrade (Downstream.exchange_done reads it of its active exchange)
    upgrade = False

    __slots__ = (
        "backend_id",
        "down",
        "head",
        "keep_alive",
        "pick",
        "resp_chunked",
        "resp_close",
        "runtime",
        "state",
        "status",
        "until_close",
        "upstream",
    )

    def __init__(self, down: FastSide) -> None:
        self.down = down
        self.head: RequestHead | None = None
        self.runtime: PoolRuntimeView | None = None
        self.pick: Pick | None = None
        self.upstream: UpstreamConnection | None = None
        self.backend_id = ""
        self.keep_alive = False
        self.resp_chunked = False
        self.resp_close = False
        self.until_close = False
        self.status = 0
        self.state = DONE  # WAITING, then RESPONDING, while it carries a request

    def __repr__(self) -> str:
        return f"FastPath(state={self.state.name}, backend={self.backend_id!r})"

    @property
    def response_started(self) -> bool:
        return self.state is RESPONDING

    # -- the request ---------------------------------------------------------------------------
    def offer(self, data: bytes) -> None:
        """One read of the client: take its request, or hand its events to the reference."""
        down = self.down
        events = down.parser.feed(data)
        n = len(events)
        if (
            n < 2
            or events[0][0] != HEAD
            or events[n - 1][0] != END
            or down.active is not None
            or down.receiving is not None
            or down.queue
        ):
            down.handle(events)
            return
        for i in range(1, n - 1):
            if events[i][0] != BODY:
                down.handle(events)
                return
        head: RequestHead = events[0][1]
        framing = head.framing
        method = head.method
        if (
            (framing != NONE and framing != LENGTH)
            or head.upgrade
            or head.expect_continue
            or method == b"HEAD"
        ):
            down.handle(events)
            return
        down.head_arrived()
        picked = down.route_and_pick(head)
        runtime, pick = picked
        if runtime is None or pick is None or type(pick) is not Pick or pick.backend is None:
            down.handle(events, picked)  # a 404, a 503, an Engine.IO decision
            return
        backend_id = pick.backend.id
        # (as Exchange.replayable: no body, and a safe method or an Idempotency-Key)
        replayable = framing == NONE and (method in REPLAYABLE or b"idempotency-key" in head.lnames)
        conn = runtime.upstreams[backend_id].take_idle(replayable)
        if conn is None:
            down.handle(events, picked)  # a new connection: the reference connects
            return
        # taken: from here on the reference's order (Exchange.attach, feed_body, body_complete)
        self.head = head
        self.runtime = runtime
        self.pick = pick
        self.backend_id = backend_id
        self.keep_alive = head.keep_alive
        self.resp_chunked = False
        self.resp_close = False
        self.until_close = False
        self.status = 0
        self.upstream = conn
        conn.exchange = self
        down.active = self
        runtime.opened(backend_id, pick)
        transport = conn.transport
        assert transport is not None
        ctx = down.ctx
        headers = head.headers
        lnames = head.lnames
        # (a plain pick has no filter: NO_FILTER.request_head would return these unchanged)
        transport.write(
            wire.request_head(
                method,
                head.target,
                headers,
                lnames,
                wire.hop_by_hop(headers, lnames),
                ctx.trust_forwarded,
                down.client_ip_bytes,
                down.scheme,
                ctx.request_id_name,
                ctx.request_id_lower,
                ctx.via,
                conn.pool.address_bytes,
                False,
                False,
                False,
                new_request_id,
            )
        )
        if down.write_paused:
            transport.pause_reading()
        for i in range(1, n - 1):
            transport.write(events[i][1])
        self.state = WAITING
        down.resp_timer.arm(ctx.timeouts.response, self.response_timeout)
        if down.parser.stalled:
            down.pause_for("pipeline")

    # -- the response (upstream.ExchangeSide) ---------------------------------------------------
    def cork(self) -> None:
        self.down.cork()

    def flush(self) -> None:
        self.down.flush()

    def pause_downstream(self, reason: str) -> None:
        self.down.pause_for(reason)

    def resume_downstream(self, reason: str) -> None:
        self.down.resume_for(reason)

    def response_head(self, head: ResponseHead, conn: UpstreamConnection) -> None:
        status = head.status
        if status < 200:
            self.hand_over().response_head(head, conn)  # 1xx, 101: the reference relays them
            return
        runtime = self.runtime
        pick = self.pick
        assert runtime is not None and pick is not None and self.head is not None
        self.status = status
        backend_id = self.backend_id
        runtime.passive(backend_id, PASSIVE_FAIL if status >= 500 else PASSIVE_OK)
        runtime.count_response(backend_id, status)
        self.state = RESPONDING
        down = self.down
        down.resp_timer.disarm()
        set_cookie = pick.set_cookie.encode("latin-1") if pick.set_cookie else b""
        data, until_close, rechunk, close = wire.response_head(
            status,
            head.reason,
            head.headers,
            down.ctx.via,
            set_cookie,
            False,
            status == 204 or status == 304,
            self.head.version == "1.0",
            down.closing(),
            self.keep_alive,
        )
        self.until_close = until_close  # (its end is the backend's close: upstream_lost)
        self.resp_chunked = rechunk
        self.resp_close = close
        down.write(data)

    def response_body(self, data: bytes) -> None:
        if self.resp_chunked:
            self.down.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self.down.write(data)

    def response_complete(self, conn: UpstreamConnection, upstream_keep_alive: bool) -> None:
        if self.state is not RESPONDING:
            return  # (as the reference: only a final response ends the exchange)
        down = self.down
        if self.resp_chunked:
            down.write(b"0\r\n\r\n")
        # Exchange.finish
        if self.upstream is conn:
            self.upstream = None
            runtime = self.runtime
            assert runtime is not None
            runtime.closed(self.backend_id)
            if down.write_paused and conn.transport is not None:
                conn.transport.resume_reading()
            down.resume_for("upstream")
            conn.release(keep_alive=upstream_keep_alive)
        self.state = DONE
        keep_alive = self.keep_alive and not self.resp_close
        self.clear()
        down.exchange_done(self, keep_alive)

    # -- everything rare: the reference Exchange takes over ---------------------------------------
    def hand_over(self) -> Adopted:
        """The reference Exchange of this request, in the state the reference would be in."""
        head, runtime, pick, conn = self.head, self.runtime, self.pick, self.upstream
        assert head is not None and runtime is not None and pick is not None and conn is not None
        state, status = self.state, self.status
        framing = (self.resp_chunked, self.resp_close, self.until_close)
        self.clear()
        return self.down.adopt(head, runtime, pick, conn, state, status, framing, self)

    def upstream_lost(self, exc: BaseException | None) -> None:
        self.hand_over().upstream_lost(exc)

    def upstream_failed(self, reason: str) -> None:
        self.hand_over().upstream_failed(reason)

    def response_timeout(self) -> None:
        self.hand_over().response_timeout()

    def downstream_lost(self) -> None:
        self.hand_over().downstream_lost()

    def clear(self) -> None:
        """Carry nothing: the next request on this connection may take the fast path."""
        self.head = None
        self.runtime = None
        self.pick = None
        self.upstream = None
        self.state = DONE
