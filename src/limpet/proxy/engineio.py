"""I/O: the proxy's side of ``--affinity engineio``: apply the policy's sid rewrites to one exchange.

The decision (which backend, which sid) is made by ``limpet.affinity.engineio``; this module only
moves bytes, at a handful of hook points in ``http1.Exchange``:

- ``admit``: a REJECTED session gets socket.io's own ``400 Session ID unknown`` (so the client
  reconnects at once and handshakes on a healthy backend); otherwise the exchange gets a
  ``EngineIOExchange`` when the request is an Engine.IO one.
- the request head goes upstream with the token in ``sid`` turned back into the backend's sid,
  and, for a handshake, without the headers that would compress the open packet;
- a polling handshake's ``200`` body is held (it is ~150 bytes), rewritten and sent with a new
  Content-Length; a websocket-only handshake's first frame is rewritten in the tunnel.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol, cast

from limpet.affinity.base import Pick, PickReason
from limpet.affinity.engineio import (
    SESSION_UNKNOWN_BODY,
    SESSION_UNKNOWN_CONTENT_TYPE,
    EngineIODecision,
    EngineIOPick,
    EngineIOPolicy,
    OpenFrameRewriter,
    OpenPacketError,
    rewrite_open_payload,
)
from limpet.proxy.filters import NO_FILTER, ExchangeFilter
from limpet.proxy.responses import local_response

if TYPE_CHECKING:
    from limpet.proxy.sides import DownstreamSide
    from limpet.proxy.upstream import TunnelPeer, UpstreamConnection


class Exchange(Protocol):
    """The exchange this filter hooks into, as the filter sees it (http1.Exchange)."""

    down: DownstreamSide
    runtime: Any
    filter: ExchangeFilter
    method: bytes
    headers: list[tuple[bytes, bytes]]
    lnames: list[bytes]
    resp_close: bool

    def write_down(self, data: bytes) -> None: ...
    def response_bytes(
        self,
        status: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        *,
        interim: bool = False,
    ) -> bytes: ...


log = logging.getLogger("limpet.proxy.engineio")

_IDENTITY = (b"", b"identity")


def session_unknown(origin: bytes | None) -> bytes:
    """The 400 a socket.io server answers for an unknown sid (Node engine.io's wording).

    CORS headers echo the Origin so a cross-origin browser client can read the answer, as the
    socket.io server's cors option would make it; the body reveals nothing.
    """
    head = [
        b"HTTP/1.1 400 Bad Request",
        b"Content-Type: " + SESSION_UNKNOWN_CONTENT_TYPE.encode(),
        b"Content-Length: " + str(len(SESSION_UNKNOWN_BODY)).encode(),
        b"Connection: close",
    ]
    if origin:
        head += [
            b"Access-Control-Allow-Origin: " + origin,
            b"Access-Control-Allow-Credentials: true",
            b"Vary: Origin",
        ]
    return b"\r\n".join(head) + b"\r\n\r\n" + SESSION_UNKNOWN_BODY


def admit(exchange: Exchange, pick: Pick) -> bool:
    """Hook in ``Exchange.choose``: False when the request was answered here (rejected)."""
    if not isinstance(pick, EngineIOPick) or pick.decision is None:
        exchange.filter = NO_FILTER
        return True
    if pick.reason is PickReason.REJECTED:
        down = exchange.down
        down.ctx.metrics.local_responses.labels("400").inc()
        if down.connected():
            lnames = exchange.lnames
            origin = exchange.headers[lnames.index(b"origin")][1] if b"origin" in lnames else None
            down.write(session_unknown(origin))  # in order with any corked bytes
            down.close()
        return False
    runtime = exchange.runtime
    policy = runtime.policy if runtime is not None else None
    if not isinstance(policy, EngineIOPolicy) or pick.backend is None:
        exchange.filter = NO_FILTER
        return True
    exchange.filter = EngineIOExchange(
        pick.decision, policy, pick.backend.id, getattr(runtime, "sessions", None)
    )
    return True


class _RewritingTransport:
    """The downstream transport as the tunnel sees it until the open frame has been rewritten."""

    def __init__(self, transport: Any, rewriter: OpenFrameRewriter, peer: _RewritingPeer) -> None:
        self._transport = transport
        self._rewriter = rewriter
        self._peer = peer

    def write(self, data: bytes) -> None:
        try:
            out = self._rewriter.feed(data)
        except OpenPacketError as exc:
            log.warning("websocket handshake from %s not rewritable: %s", self._peer.backend, exc)
            self._transport.abort()
            return
        if out:
            self._transport.write(out)
        if self._rewriter.done:
            self._peer.finished()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _RewritingPeer:
    """Stands in for the Downstream as the upstream's tunnel peer until the open frame passed."""

    def __init__(self, down: Any, conn: UpstreamConnection, mint: Any, backend: str) -> None:
        self.down = down
        self.conn = conn
        self.backend = backend
        self._rewriter = OpenFrameRewriter(mint)

    @property
    def transport(self) -> Any:
        transport = self.down.transport
        return None if transport is None else _RewritingTransport(transport, self._rewriter, self)

    def finished(self) -> None:
        if self.conn.tunnel_peer is cast("TunnelPeer", self):
            self.conn.tunnel_peer = self.down  # from now on: the plain tunnel, no extra hop

    def peer_lost(self) -> None:
        self.down.peer_lost()

    def peer_eof(self) -> None:
        self.down.peer_eof()

    def tunnel_activity(self) -> None:
        self.down.tunnel_activity()


class EngineIOExchange(ExchangeFilter):
    """The engineio filter of one exchange: its upstream URL (the backend's own sid, no
    compression of the handshake), and the handshake answer to rewrite."""

    __slots__ = ("backend", "decision", "held", "held_body", "policy", "sessions")

    def __init__(
        self,
        decision: EngineIODecision,
        policy: EngineIOPolicy,
        backend: str,
        sessions: Any = None,
    ) -> None:
        self.decision = decision
        self.policy = policy
        self.backend = backend
        #: the pool's session accounting (limpet.proxy.rebalance.Sessions), told of tunnels
        self.sessions = sessions
        self.held: tuple[int, bytes, list[tuple[bytes, bytes]]] | None = None
        self.held_body: list[bytes] = []

    def __repr__(self) -> str:
        return f"EngineIOExchange(backend={self.backend!r}, rewrite={self.decision.rewrite!r})"

    def _mint(self, sid: str) -> str:
        return self.policy.mint(sid, self.backend)

    # -- request head --------------------------------------------------------------------------
    def request_head(self, url: bytes, drop: frozenset[bytes]) -> tuple[bytes, frozenset[bytes]]:
        if self.decision.strip_headers:  # a handshake's only: session requests keep ``drop``
            drop = drop | self.strip_headers
        return self.url(url), drop

    def url(self, url: bytes) -> bytes:
        """The request target to send upstream: the backend's own sid in the query."""
        if self.decision.sid is None:
            return url
        path = url.partition(b"?")[0]
        return path + b"?" + self.decision.upstream_query.encode("latin-1")

    @property
    def strip_headers(self) -> frozenset[bytes]:
        return frozenset(h.encode() for h in self.decision.strip_headers)

    # -- response --------------------------------------------------------------------------------
    def response_head(
        self, exchange: Exchange, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]
    ) -> bool:
        """Hook in ``response_head``: keep a polling handshake's 200 until its body is complete."""
        if self.decision.rewrite != "polling" or status != 200 or exchange.method != b"GET":
            return False
        self.held = (status, reason, headers)
        self.held_body = []
        return True

    def body(self, data: bytes) -> bool:
        """Hook in ``response_body``: True when ``data`` was kept for the rewrite."""
        if self.held is None:
            return False
        self.held_body.append(data)
        return True

    def end(self, exchange: Exchange) -> None:
        """Hook in ``response_complete``: write the held handshake, its sid now a token."""
        if self.held is None:
            return
        status, reason, headers = self.held
        self.held = None  # (the exchange steps from HELD to DONE once this returns)
        encoding = next((v for n, v in headers if n.lower() == b"content-encoding"), b"")
        try:
            if encoding.strip().lower() not in _IDENTITY:
                raise OpenPacketError(f"handshake body is {encoding.decode('latin-1')}-encoded")
            body = rewrite_open_payload(b"".join(self.held_body), self._mint)
        except OpenPacketError as exc:
            log.warning("polling handshake from %s not rewritable: %s", self.backend, exc)
            exchange.resp_close = True
            exchange.write_down(local_response(502, f"limpet: {exc}"))
            return
        kept = [(n, v) for n, v in headers if n.lower() not in (b"content-length",)]
        kept.append((b"Content-Length", str(len(body)).encode()))
        exchange.write_down(exchange.response_bytes(status, reason, kept) + body)

    def tunnel(self, conn: UpstreamConnection) -> None:
        """Hook after ``start_tunnel``: the session now lives in a tunnel (counted while it is
        open, closed with 1012 if the rebalance moves it); rewrite the first frame of a
        websocket-only handshake."""
        if self.sessions is not None and conn.tunnel_peer is not None:
            request = self.decision.request
            self.sessions.tunnel(request.sid if request else None, self.backend, conn.tunnel_peer)
        if self.decision.rewrite != "websocket" or conn.tunnel_peer is None:
            return
        peer = _RewritingPeer(conn.tunnel_peer, conn, self._mint, self.backend)
        conn.tunnel_peer = cast("TunnelPeer", peer)
