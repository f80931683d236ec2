"""SANS-IO: Engine.IO v4 aware affinity: the backend rides inside the session id, signed.

The handshake's ``sid`` is rewritten on its way to the client into a token
``<sid>.<backend tag>.<mac>``: the tag is a keyed hash of the backend id (never its address) and
the mac an HMAC-SHA256 over both, so any proxy replica holding the same secret routes every later
request of the session to the same backend, with no cookie and no shared table. Before a request is
forwarded the token in its query is turned back into the backend's own sid.

Engine.IO v4 (https://socket.io/docs/v4/engine-io-protocol/) carries the sid in three places only:
the open packet of the handshake response (polling body, or the first WebSocket frame of a
websocket-only handshake), and the ``sid`` query parameter of every later request (polling GET/POST
and the WebSocket upgrade; the ``2probe``/``3probe`` exchange carries no sid). Those three are all
this module touches.
"""

from __future__ import annotations

import base64
import enum
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple
from urllib.parse import unquote

from limpet.affinity.base import AffinityPolicy, Pick, PickReason, RequestFacts
from limpet.affinity.spec import AffinitySpec
from limpet.balancing.base import Balancer, build_balancer
from limpet.errors import ConfigError, TokenError
from limpet.pool.model import BackendView, PoolSnapshot

__all__ = [
    "SESSION_UNKNOWN_BODY",
    "SESSION_UNKNOWN_CONTENT_TYPE",
    "SESSION_UNKNOWN_STATUS",
    "EngineIODecision",
    "EngineIOPick",
    "EngineIOPolicy",
    "EngineIORequest",
    "OpenFrameRewriter",
    "OpenPacketError",
    "RequestKind",
    "SidCodec",
    "build_policy",
    "classify",
    "encode_frame_header",
    "replace_sid",
    "rewrite_open_frame",
    "rewrite_open_payload",
]

#: What the reference socket.io server (Node ``engine.io``, ``Server.errorMessages``) answers for a
#: session it does not know. Clients treat it as a transport error and reconnect with a fresh
#: handshake at once, which is exactly what a session whose backend is gone needs.
SESSION_UNKNOWN_STATUS = 400
SESSION_UNKNOWN_CONTENT_TYPE = "application/json"
SESSION_UNKNOWN_BODY = b'{"code":1,"message":"Session ID unknown"}'

#: Engine.IO v4 packet types (protocol §"Packet encoding") and the payload record separator.
OPEN_PACKET = "0"
RECORD_SEPARATOR = b"\x1e"

_TAG_BYTES = 8  # backend tag: 64 bits of HMAC, 11 base64url chars; collisions are negligible
_MAC_BYTES = 16  # session mac: 128 bits of HMAC, 22 base64url chars
_TAG_LEN = 11
_MAC_LEN = 22
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
#: RFC 3986 unreserved characters: a sid made of them needs no escaping in a query string. Both
#: reference servers produce base64url-like sids (python-engineio ``generate_id``, Node base64id).
_SID_SAFE = re.compile(r"[A-Za-z0-9._~-]{1,256}")
_TAG_CACHE_MAX = 4096
#: verified tokens kept (token -> (sid, tag)): a polling session sends two requests per round trip
#: with the same token, and its HMAC was 4 µs of the 17 µs pick (bench/socketio, 2026-11-26).
#: ~250 bytes an entry: at most ~4 MB, cleared whole when full (sessions re-verify once).
_OPENED_CACHE_MAX = 16384


class OpenPacketError(ValueError):
    """A handshake response does not hold the Engine.IO open packet we must rewrite (-> 502)."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class SidCodec:
    """Mints and opens sid tokens ``<sid>.<tag>.<mac>`` with one shared secret; no state besides.

    The tag also covers the pool name, so a token of one pool never leads into another.
    """

    def __init__(self, secret: bytes | str, pool_name: str = "default") -> None:
        key = secret.encode() if isinstance(secret, str) else bytes(secret)
        if not key:
            raise ConfigError("the engineio affinity needs a non-empty secret", key="secret")
        self._key = key
        self._pool = pool_name.encode()
        self._tags: dict[str, str] = {}
        self._opened: dict[str, tuple[str, str]] = {}

    def backend_tag(self, backend_id: str) -> str:
        """The keyed hash naming a backend inside tokens: same id and secret, same tag."""
        tag = self._tags.get(backend_id)
        if tag is None:
            digest = hmac.digest(
                self._key,
                b"limpet-engineio-backend\x00" + self._pool + b"\x00" + backend_id.encode(),
                "sha256",
            )
            tag = _b64(digest[:_TAG_BYTES])
            if len(self._tags) >= _TAG_CACHE_MAX:  # ids churn on Kubernetes: stay bounded
                self._tags.clear()
            self._tags[backend_id] = tag
        return tag

    def _mac(self, sid: str, tag: str) -> str:
        msg = b"\x00".join((b"limpet-engineio-sid", self._pool, sid.encode(), tag.encode()))
        # hmac.digest: the one-shot C path, ~2x faster than hmac.new(...).digest()
        return _b64(hmac.digest(self._key, msg, "sha256")[:_MAC_BYTES])

    def mint(self, sid: str, backend_id: str) -> str:
        """The token handed to the client in place of ``sid`` (URL-safe characters only)."""
        if not _SID_SAFE.fullmatch(sid):
            raise OpenPacketError(f"backend sid {sid[:40]!r} is not URL-safe; cannot sign it")
        tag = self.backend_tag(backend_id)
        return f"{sid}.{tag}.{self._mac(sid, tag)}"

    def open(self, token: str) -> tuple[str, str]:
        """Verify a token; return (original sid, backend tag) or raise TokenError.

        A token verified once is remembered (bounded): the answer depends on the token and the
        secret only, and only tokens that passed the HMAC check are kept.
        """
        opened = self._opened.get(token)
        if opened is not None:
            return opened
        opened = self._verify(token)
        if len(self._opened) >= _OPENED_CACHE_MAX:
            self._opened.clear()
        self._opened[token] = opened
        return opened

    def _verify(self, token: str) -> tuple[str, str]:
        parts = token.rsplit(".", 2)
        if len(parts) != 3:
            raise TokenError("not a limpet engineio sid")
        sid, tag, mac = parts
        if (
            len(tag) != _TAG_LEN
            or len(mac) != _MAC_LEN
            or not _B64URL.fullmatch(tag)
            or not _B64URL.fullmatch(mac)
            or not _SID_SAFE.fullmatch(sid)
        ):
            raise TokenError("malformed engineio sid token")
        if not hmac.compare_digest(mac, self._mac(sid, tag)):
            raise TokenError("engineio sid token signature does not match")
        return sid, tag

    def backend_for(self, tag: str, pool: PoolSnapshot) -> BackendView | None:
        """The backend of ``pool`` whose tag is ``tag``, if it is still there."""
        for backend in pool.backends:
            if hmac.compare_digest(self.backend_tag(backend.id), tag):
                return backend
        return None


# --- request classification --------------------------------------------------------------------


class RequestKind(enum.Enum):
    """Where a request stands in an Engine.IO session."""

    HANDSHAKE = "handshake"  # no sid: opens a session on a backend of our choice
    SESSION = "session"  # carries a sid: must reach the backend that opened the session


class EngineIORequest(NamedTuple):
    """What the query string of an Engine.IO request says.

    A NamedTuple, not a frozen dataclass: as immutable, and built in 0.4 µs instead of 2.3 (a
    frozen dataclass sets each field through object.__setattr__); one is built per request.
    """

    kind: RequestKind
    transport: str  # "polling" (the protocol's default when absent) or "websocket"
    eio: str | None
    sid: str | None  # the sid as the client sent it (a token, if we minted it)
    sid_count: int  # how many sid parameters: more than one is refused, never guessed at


def is_engineio_path(path: str, prefix: str) -> bool:
    """True for the Engine.IO endpoint ``prefix`` (``/socket.io/``), with or without the slash."""
    bare = prefix.rstrip("/")
    return path == bare or path.startswith(bare + "/")


def _query_pairs(query: str) -> list[tuple[str, str, str]]:
    """(name, decoded value, raw field) for each ``&``-separated field of a raw query string."""
    if "%" not in query and "+" not in query:
        # nothing to decode (what socket.io clients send): the fields as they are, 4x faster
        return [(n, v, f) for f in query.split("&") if f for n, _, v in (f.partition("="),)]
    pairs: list[tuple[str, str, str]] = []
    for field in query.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        pairs.append((unquote(name.replace("+", " ")), unquote(value.replace("+", " ")), field))
    return pairs


def classify(path: str, query: str, prefix: str = "/socket.io/") -> EngineIORequest | None:
    """Classify a request; None when it is not for the Engine.IO endpoint at ``prefix``."""
    if not is_engineio_path(path, prefix):
        return None
    return _classify_pairs(_query_pairs(query))


def _classify_pairs(pairs: list[tuple[str, str, str]]) -> EngineIORequest:
    eio: str | None = None
    transport: str | None = None
    sids: list[str] = []
    for name, value, _ in pairs:
        if name == "sid":
            sids.append(value)
        elif name == "EIO" and eio is None:
            eio = value
        elif name == "transport" and transport is None:
            transport = value
    return EngineIORequest(
        kind=RequestKind.SESSION if sids else RequestKind.HANDSHAKE,
        transport=transport or "polling",
        eio=eio,
        sid=sids[0] if sids else None,
        sid_count=len(sids),
    )


def replace_sid(query: str, sid: str) -> str:
    """``query`` with its ``sid`` parameter's value set to ``sid``; every other field untouched."""
    return _replace_sid_pairs(_query_pairs(query), sid)


def _replace_sid_pairs(pairs: list[tuple[str, str, str]], sid: str) -> str:
    return "&".join("sid=" + sid if name == "sid" else raw for name, _, raw in pairs)


# --- the policy ----------------------------------------------------------------------------------

Rewrite = Literal["polling", "websocket"]


class EngineIODecision(NamedTuple):
    """Everything the proxy needs for one request in engineio mode (a NamedTuple: see
    EngineIORequest).

    ``pick`` is the routing decision (REJECTED -> answer the Session-ID-unknown 400);
    ``upstream_query`` the query string to forward; ``rewrite`` which handshake response to
    rewrite (a 200 polling body, or the first frame after a 101); ``strip_headers`` the request
    headers to drop so that response arrives uncompressed and can be rewritten.
    """

    pick: Pick
    request: EngineIORequest | None  # None: not Engine.IO, ``pick`` came from the fallback
    upstream_query: str
    rewrite: Rewrite | None = None
    strip_headers: tuple[str, ...] = ()
    sid: str | None = None  # the backend's own sid of a session request


@dataclass(frozen=True, slots=True)
class EngineIOPick(Pick):
    """The Pick ``EngineIOPolicy.pick`` returns for Engine.IO requests: the decision rides along,
    so a caller that only knows the AffinityPolicy interface still routes right, and the proxy's
    engineio hook finds the query and response rewrites it must apply."""

    decision: EngineIODecision | None = None


class EngineIOPolicy:
    """Affinity ``engineio``: the session's backend is signed into its sid; nothing is stored.

    Requests outside the Engine.IO path go to ``fallback`` (the cookie policy by default, built
    by the factory), so the pages and APIs served next to socket.io keep their own affinity.
    """

    name = "engineio"

    def __init__(
        self,
        *,
        secret: bytes | str,
        path: str = "/socket.io/",
        pool_name: str = "default",
        fallback: AffinityPolicy | None = None,
        balancer: Balancer | None = None,
    ) -> None:
        if not path.startswith("/"):
            raise ConfigError(f"{path!r} must start with '/'", key="affinity.engineio-path")
        self.path = path
        self.codec = SidCodec(secret, pool_name)
        self.fallback = fallback
        self.balancer = balancer or build_balancer("round-robin")
        self._pinned: dict[str, Pick] = {}

    def __repr__(self) -> str:
        return (
            f"EngineIOPolicy(path={self.path!r}, fallback={getattr(self.fallback, 'name', None)!r})"
        )

    def pick(self, facts: RequestFacts, pool: PoolSnapshot) -> Pick:
        decision = self.decide(facts, pool)
        if decision.request is None:
            return decision.pick  # the fallback's own Pick (a cookie, perhaps)
        p = decision.pick
        return EngineIOPick(p.backend, p.reason, p.set_cookie, decision=decision)

    def mint(self, sid: str, backend_id: str) -> str:
        """The token that replaces ``sid`` in the handshake answered by ``backend_id``."""
        return self.codec.mint(sid, backend_id)

    def decide(self, facts: RequestFacts, pool: PoolSnapshot) -> EngineIODecision:
        if not is_engineio_path(facts.path, self.path):
            return EngineIODecision(
                pick=self._fallback(facts, pool), request=None, upstream_query=facts.query
            )
        pairs = _query_pairs(facts.query)  # parsed once: classified, then the sid replaced
        request = _classify_pairs(pairs)
        if request.kind is RequestKind.HANDSHAKE:
            pick = self._new(pool)
            websocket = request.transport == "websocket"
            return EngineIODecision(
                pick=pick,
                request=request,
                upstream_query=facts.query,
                rewrite="websocket" if websocket else "polling",
                # the open packet must reach us uncompressed: no gzip body (polling), no
                # permessage-deflate (RFC 7692) on the websocket whose first frame we rewrite
                strip_headers=("sec-websocket-extensions",) if websocket else ("accept-encoding",),
            )
        if request.sid_count != 1 or request.sid is None:
            return self._rejected(request, facts)
        try:
            sid, tag = self.codec.open(request.sid)
        except TokenError:
            return self._rejected(request, facts)
        backend = self.codec.backend_for(tag, pool)
        # a draining backend keeps its sessions; an ejected or removed one has lost them
        if backend is None or not backend.serves_pinned:
            return self._rejected(request, facts)
        # Picks are immutable values: one per backend view serves every request pinned to it
        pinned = self._pinned.get(backend.id)
        if pinned is None or pinned.backend is not backend:
            if len(self._pinned) >= _TAG_CACHE_MAX:
                self._pinned.clear()
            pinned = self._pinned[backend.id] = Pick(backend, PickReason.PINNED)
        return EngineIODecision(
            pick=pinned,
            request=request,
            upstream_query=_replace_sid_pairs(pairs, sid),
            sid=sid,
        )

    @staticmethod
    def _rejected(request: EngineIORequest, facts: RequestFacts) -> EngineIODecision:
        return EngineIODecision(
            pick=Pick(None, PickReason.REJECTED), request=request, upstream_query=facts.query
        )

    def _fallback(self, facts: RequestFacts, pool: PoolSnapshot) -> Pick:
        if self.fallback is not None:
            return self.fallback.pick(facts, pool)
        return self._new(pool)

    def _new(self, pool: PoolSnapshot) -> Pick:
        backend = self.balancer.choose(pool.eligible(), pool)
        if backend is None:
            return Pick(None, PickReason.NO_BACKEND)
        return Pick(backend, PickReason.NEW)


def build_policy(
    spec: AffinitySpec, *, secret: bytes | str, pool_name: str = "default"
) -> EngineIOPolicy:
    """The engineio policy of ``spec``; other paths keep cookie affinity (same cookie settings).

    Called by ``limpet.affinity.factory.build_policy`` for ``mode == "engineio"``.
    """
    from dataclasses import replace

    from limpet.affinity.factory import build_policy as build_other

    raw = secret.encode() if isinstance(secret, str) else secret
    fallback = build_other(replace(spec, mode="cookie"), secret=raw, pool_name=pool_name)
    try:
        balancer = build_balancer(spec.balancer)
    except ValueError as exc:
        raise ConfigError(str(exc), key="affinity.balance") from None
    return EngineIOPolicy(
        secret=secret,
        path=spec.engineio_path,
        pool_name=pool_name,
        fallback=fallback,
        balancer=balancer,
    )


# --- rewriting the handshake response ----------------------------------------------------------


def _rewrite_open_packet(packet: bytes, mint: Callable[[str], str]) -> bytes:
    text = packet.decode("utf-8", errors="strict") if packet else ""
    if not text.startswith(OPEN_PACKET + "{"):
        raise OpenPacketError(f"expected an Engine.IO open packet, got {text[:40]!r}")
    try:
        handshake = json.loads(text[1:])
    except ValueError as exc:
        raise OpenPacketError(f"open packet is not JSON: {exc}") from None
    if not isinstance(handshake, dict) or not isinstance(handshake.get("sid"), str):
        raise OpenPacketError("open packet has no string 'sid'")
    handshake["sid"] = mint(handshake["sid"])
    return (OPEN_PACKET + json.dumps(handshake, separators=(",", ":"), ensure_ascii=False)).encode()


def rewrite_open_payload(body: bytes, mint: Callable[[str], str]) -> bytes:
    """The polling handshake body with its open packet's sid replaced by ``mint(sid)``.

    The body is an Engine.IO v4 payload: packets separated by 0x1e, the open packet first. The
    caller sends the result with a new Content-Length.
    """
    first, sep, rest = body.partition(RECORD_SEPARATOR)
    try:
        return _rewrite_open_packet(first, mint) + sep + rest
    except UnicodeDecodeError:
        raise OpenPacketError("open packet is not UTF-8 text") from None


# WebSocket framing, RFC 6455 §5.2. Hand-written because we rewrite one frame in the middle of a
# byte tunnel: the WebSocket libraries at hand (aiohttp, websockets) own whole connections.
_OP_TEXT = 0x1
_CONTROL = 0x8  # opcodes 0x8..0xF: close, ping, pong (§5.5)


def encode_frame_header(opcode: int, length: int, *, fin: bool = True) -> bytes:
    """An unmasked frame header with the minimal length encoding (§5.2: 7, 16 or 64 bits)."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        return bytes((first, length))
    if length < 1 << 16:
        return bytes((first, 126)) + length.to_bytes(2, "big")
    return bytes((first, 127)) + length.to_bytes(8, "big")


def _parse_frame(buf: bytes | bytearray, at: int) -> tuple[int, int, int, int] | None:
    """(first byte, payload start, payload end, length) of the frame at ``at``; None: incomplete."""
    if len(buf) - at < 2:
        return None
    first, second = buf[at], buf[at + 1]
    if second & 0x80:
        raise OpenPacketError("server frame is masked (RFC 6455 §5.1 forbids it)")
    length = second & 0x7F
    start = at + 2
    if length == 126:
        if len(buf) - start < 2:
            return None
        length = int.from_bytes(buf[start : start + 2], "big")
        start += 2
    elif length == 127:
        if len(buf) - start < 8:
            return None
        length = int.from_bytes(buf[start : start + 8], "big")
        if length >> 63:
            raise OpenPacketError("frame length has its most significant bit set (§5.2)")
        start += 8
    end = start + length
    if len(buf) < end:
        return None
    return first, start, end, length


def rewrite_open_frame(
    buf: bytes | bytearray, mint: Callable[[str], str]
) -> tuple[bytes, bytes] | None:
    """Rewrite the open packet in the first server text frame of a websocket-only handshake.

    ``buf`` is what the upstream sent after the 101 so far. Returns None when more bytes are
    needed, else (bytes to send downstream: leading control frames and the re-framed open packet,
    the rest of ``buf`` untouched). A close frame before any text frame ends the search: it and the
    rest pass through.
    """
    at = 0
    while True:
        frame = _parse_frame(buf, at)
        if frame is None:
            return None
        first, start, end, _ = frame
        opcode = first & 0x0F
        if first & 0x70:
            raise OpenPacketError("compressed or extended frame (RSV bits set) cannot be rewritten")
        if opcode >= _CONTROL:
            at = end
            if opcode == 0x8:  # close: there will be no open packet
                return bytes(buf[:at]), bytes(buf[at:])
            continue
        if opcode != _OP_TEXT or not first & 0x80:
            raise OpenPacketError("first data frame is not a whole text frame")
        try:
            payload = _rewrite_open_packet(bytes(buf[start:end]), mint)
        except UnicodeDecodeError:
            raise OpenPacketError("open packet is not UTF-8 text") from None
        out = bytes(buf[:at]) + encode_frame_header(_OP_TEXT, len(payload)) + payload
        return out, bytes(buf[end:])


class OpenFrameRewriter:
    """Feed upstream bytes after a websocket-only handshake's 101; get bytes for downstream.

    Holds back bytes until the open frame is complete, rewrites it, then passes everything
    through unchanged (``done`` is True from then on).
    """

    __slots__ = ("_buf", "_mint", "done")

    def __init__(self, mint: Callable[[str], str]) -> None:
        self._mint = mint
        self._buf = bytearray()
        self.done = False

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return data
        self._buf += data
        result = rewrite_open_frame(self._buf, self._mint)
        if result is None:
            if len(self._buf) > 1 << 20:  # an open packet is ~150 bytes: this is not one
                raise OpenPacketError("no open packet in the first 1 MiB from the backend")
            return b""
        out, rest = result
        self.done = True
        self._buf = bytearray()
        return out + rest
