"""The hub's one adapter onto python-engineio / python-socketio internals.

The hub queues packets straight onto Engine.IO send queues (fan-out without a task per client),
swaps the aiohttp websocket wrapper (no per-message deflate) and decodes socket.io packets so a
payload its JSON parser refuses still gets an error ack. None of that is public API of those
libraries: every such reach is here, named in ``PRIVATE_USES`` (what, and why), against the
releases pinned in pyproject.toml. tests/unit/hub/test_library_contract.py checks each name on
the installed releases and says which one a new release removed (docs/hub.md, "Library
internals").
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import socketio
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from engineio import exceptions as eio_exceptions
from engineio import json as eio_json
from engineio import packet as eio_packet
from engineio.async_drivers.aiohttp import WebSocket as _EioWebSocket
from engineio.async_socket import AsyncSocket
from engineio.packet import Packet as Packet  # the hub's packet type, re-exported
from socketio import packet as sio_packet

from limpet.hub.channels.payload import MAX_DEPTH, decoded_within
from limpet.hub.fragments import MessageMeter, UnfinishedBudget
from limpet.hub.sendqueue import SendQueue

log = logging.getLogger("limpet.hub")


@dataclass(frozen=True, slots=True)
class PrivateUse:
    """One name the hub uses that its library does not document: where it lives (``owner``: a
    module, or a class whose instances have it), the name, and why the hub needs it."""

    owner: str
    name: str
    why: str
    #: the module of the hub that relies on it
    where: str = "limpet/hub/transport.py"

    def __str__(self) -> str:
        return f"{self.owner}.{self.name}"


#: Every undocumented name of python-engineio, python-socketio and aiohttp this module relies
#: on, and redis-py's one that the Redis broker relies on.
PRIVATE_USES: tuple[PrivateUse, ...] = (
    PrivateUse("socketio.AsyncServer", "_handle_event", "HubServer: inline events, no task each"),
    PrivateUse("socketio.AsyncServer", "_binary_packet", "dispatch_now: a binary event in flight"),
    PrivateUse("socketio.AsyncServer", "packet_class", "dispatch_now: decodes like the server"),
    PrivateUse("socketio.AsyncManager", "sid_from_eio_sid", "inline events: the socket.io sid"),
    PrivateUse("socketio.AsyncManager", "eio_sid_from_sid", "find_socket: the Engine.IO socket"),
    PrivateUse("socketio.AsyncManager", "basic_disconnect", "HubManager: O(1) disconnect"),
    PrivateUse("socketio.AsyncManager", "basic_enter_room", "HubManager: rooms per client"),
    PrivateUse("socketio.AsyncManager", "basic_leave_room", "HubManager: rooms per client"),
    PrivateUse("socketio.AsyncManager", "rooms", "HubManager: the rooms it indexes"),
    PrivateUse("socketio.AsyncManager", "callbacks", "HubManager: basic_disconnect's cleanup"),
    PrivateUse("socketio.AsyncManager", "pending_connect", "HubManager: the same"),
    PrivateUse("socketio.AsyncManager", "pending_disconnect", "HubManager: the same"),
    PrivateUse("engineio.json", "_safe_int", "_PacketJson: engineio's integer limit, kept"),
    PrivateUse("engineio.AsyncServer", "_async", "disable_ws_compression: the websocket class"),
    PrivateUse("engineio.AsyncServer", "sockets", "find_socket: sid -> Engine.IO socket"),
    PrivateUse("engineio.async_drivers.aiohttp", "WebSocket", "_PlainWebSocket's base class"),
    PrivateUse("engineio.async_socket.AsyncSocket", "queue", "enqueue: the send queue"),
    PrivateUse("engineio.async_socket.AsyncSocket", "upgraded", "enqueue: on the websocket"),
    PrivateUse("engineio.async_socket.AsyncSocket", "upgrading", "enqueue: not mid-upgrade"),
    PrivateUse(
        "engineio.async_socket.AsyncSocket", "_websocket_handler", "_serve_websocket's model"
    ),
    PrivateUse("aiohttp.web.WebSocketResponse", "_writer", "_PlainWebSocket: its own frames"),
    PrivateUse("aiohttp.base_protocol.BaseProtocol", "_paused", "flow control: back-pressure"),
    PrivateUse("aiohttp.base_protocol.BaseProtocol", "_drain_helper", "flow control: the wait"),
    PrivateUse("aiohttp.web.AppRunner", "_make_server", "HubRunner: the hub's request handler"),
    PrivateUse("aiohttp.web.Server", "_kwargs", "HubRunner: the handler's options"),
    PrivateUse("aiohttp.web_protocol.RequestHandler", "handle_error", "JSON errors, one line"),
    PrivateUse("aiohttp.web_protocol.RequestHandler", "_messages", "head timeout: head parsed"),
    PrivateUse(
        "aiohttp.web_protocol.RequestHandler", "set_parser", "unfinished budget: meters frames"
    ),
    PrivateUse("aiohttp.http.WebSocketReader", "feed_data", "_MeteredReader: what it wraps"),
    PrivateUse("aiohttp.http.WebSocketReader", "feed_eof", "_MeteredReader: what it wraps"),
    PrivateUse(
        "redis.asyncio.Connection",
        "_parser",
        "the live reader: RESP3 push records as they are, without a log line each",
        "limpet/hub/brokers/redis.py",
    ),
)


def missing_private_uses(owners: dict[str, Any]) -> list[str]:
    """The uses of ``PRIVATE_USES`` whose name ``owners[owner]`` (a module, a class or an
    instance of it) lacks, each as one line naming it, why the hub needs it, and what to do."""
    missing = []
    for use in PRIVATE_USES:
        owner = owners.get(use.owner)
        if owner is None or not hasattr(owner, use.name):
            missing.append(
                f"{use} is gone from the installed release ({use.why}): adapt "
                f"{use.where} or pin the release the hub was tested on"
            )
    return missing


#: the event name a socket.io EVENT whose JSON could not be parsed is delivered under
BAD_PACKET_EVENT = "limpet:bad-packet"


_json = msgspec.json.Encoder()


def event_packet(event: str, payload: Any) -> Packet:
    """One socket.io event as an Engine.IO packet, encoded once however many clients get it.

    The socket.io text encoding of an EVENT on the default namespace without an ack id is
    ``2`` + the JSON array [event, payload] (what python-socketio's Packet.encode writes);
    msgspec writes that JSON several times faster than python-socketio's encoder, which also
    walks the data looking for binary parts first. Raises ValueError or TypeError for data it
    cannot encode, RecursionError past the interpreter's depth (which varies by version: the
    hub never gets there, it hands over only data within ``--max-depth``, see payload.py)."""
    try:
        encoded = "2" + _json.encode([event, payload]).decode()
    except msgspec.EncodeError as exc:
        raise ValueError(str(exc)) from None
    packet: Packet = eio_packet.Packet(eio_packet.MESSAGE, data=encoded)
    return packet


def ack_packet(ack_id: int, answer: Any) -> Packet:
    """A socket.io ACK on the default namespace: ``3`` + the ack id + the JSON array [answer]
    (python-socketio's encoding of a handler's single return value)."""
    encoded = "3" + str(ack_id) + _json.encode([answer]).decode()
    packet: Packet = eio_packet.Packet(eio_packet.MESSAGE, data=encoded)
    return packet


#: an inline handler: (socket.io sid, ack id or None, the event's arguments)
InlineHandler = Callable[[str, "int | None", list[Any]], None]


class HubServer(socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio's server, except that the events in ``inline`` are handed to a plain
    function from the connection's reader, without the task python-socketio starts per event
    (and its handler lookup, ack packet and queued send). The function answers the ack itself
    (``ack_packet``) once it has one; it must not block. Measured: a task, its wake-ups and
    the ack round trip per publish were the largest per-message cost of the 100-channel
    scenario after fan-out (docs/benchmarks-hub.md)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inline: dict[str, InlineHandler] = {}
        # the hub's websocket reader (``_serve_websocket``) reaches this server from the
        # Engine.IO socket it serves
        self.eio._hub_sio = self
        # each Engine.IO socket's send queue: asyncio.Queue's interface without its three
        # deques per connection (python-engineio's public hook for the queue class)
        self.eio.create_queue = SendQueue

    async def _handle_event(self, eio_sid: str, namespace: Any, id: Any, data: Any) -> None:
        handler = self._inline_handler(namespace, data)
        if handler is None:
            await super()._handle_event(eio_sid, namespace, id, data)
            return
        sid = self.manager.sid_from_eio_sid(eio_sid, "/")
        if self.manager.is_connected(sid, "/"):
            handler(sid, id, data[1:])

    def _inline_handler(self, namespace: Any, data: Any) -> InlineHandler | None:
        if data and isinstance(data[0], str) and (namespace or "/") == "/":
            return self.inline.get(data[0])
        return None

    def dispatch_now(self, eio_sid: str, text: str) -> bool:
        """Handle the socket.io EVENT ``text`` (an Engine.IO MESSAGE's data) synchronously
        when it is one for an inline handler; False (nothing done) for anything else, which
        then takes python-engineio's path (a task per message, as before). Called by the
        websocket reader, so an incoming publish costs no task at all."""
        if eio_sid in self._binary_packet:
            return False  # attachments of a binary packet are awaited: its path, in order
        try:
            pkt = self.packet_class(encoded_packet=text)
        except Exception:
            return False  # its own path decodes it again and reports the error as it does
        if pkt.packet_type != sio_packet.EVENT:
            return False
        handler = self._inline_handler(pkt.namespace, pkt.data)
        if handler is None:
            return False
        sid = self.manager.sid_from_eio_sid(eio_sid, "/")
        if not self.manager.is_connected(sid, "/"):
            # not (yet) connected: its CONNECT may still be in python-engineio's task; the
            # event waits behind it on that path, as it always did
            return False
        handler(sid, pkt.id, pkt.data[1:])
        return True


class HubManager(socketio.AsyncManager):  # type: ignore[misc]
    """python-socketio's client manager, except that a disconnect leaves only the rooms the
    client is in. python-socketio's ``basic_disconnect`` copies and scans every room of the
    namespace to find them, and every client has a room of its own (its sid): O(clients) per
    disconnect, O(N²) for the clients of a replica that gave up or left in a storm (7.5% of a
    replica's CPU in a 2 000-client connect storm, docs/benchmarks-hub.md). Here the rooms of
    each client are indexed as it enters and leaves them; the rest of ``basic_disconnect``
    (callbacks, pending connects and disconnects) is python-socketio 5's, unchanged."""

    def __init__(self) -> None:
        super().__init__()
        #: (namespace, sid) -> the rooms that client is in (None: the namespace's room of all)
        self._joined: dict[tuple[Any, str], set[Any]] = {}

    def basic_enter_room(self, sid: str, namespace: Any, room: Any, eio_sid: Any = None) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self._joined.setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid: str, namespace: Any, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        joined = self._joined.get((namespace, sid))
        if joined is not None:
            joined.discard(room)
            if not joined:
                del self._joined[(namespace, sid)]

    def basic_disconnect(self, sid: str, namespace: Any, **kwargs: Any) -> None:
        if namespace not in self.rooms:
            return
        for room in list(self._joined.get((namespace, sid), ())):
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            waiting = pending.get(namespace)
            if waiting is not None and sid in waiting:
                waiting.remove(sid)
                if not waiting:
                    del pending[namespace]


class TooDeep(ValueError):
    """A packet nested past the hub's ``--max-depth``."""


class _PacketJson:
    """python-engineio's JSON module (its ``loads`` refuses integers of over 100 digits) with
    the decoder built once: engineio's ``loads`` passes ``parse_int`` to ``json.loads``,
    which then builds a new JSONDecoder for every incoming packet. A packet nested deeper than
    the hub's limit is refused with one message whether the json module gave up on it (3.11
    and 3.12 past ~1 000 levels) or not (3.13 reads ~10 000): see payload.decoded_within."""

    _decoder = json.JSONDecoder(parse_int=eio_json._safe_int)
    dumps = staticmethod(eio_json.dumps)
    #: the hub's ``--max-depth`` (``packet_class`` sets it per server)
    max_depth = MAX_DEPTH

    @classmethod
    def loads(cls, text: Any) -> Any:
        try:
            if isinstance(text, str) and not text.startswith("\ufeff"):
                value = cls._decoder.decode(text)
            else:
                value = eio_json.loads(text)
        except RecursionError:  # deeper than the json module goes: deeper than any max_depth
            raise TooDeep(f"data nested deeper than {cls.max_depth} levels") from None
        # + 2: the event's array and its payload object hold the data
        if isinstance(text, str | bytes) and not decoded_within(text, value, cls.max_depth + 2):
            raise TooDeep(f"data nested deeper than {cls.max_depth} levels")
        return value


class HubPacket(sio_packet.Packet):  # type: ignore[misc]
    """python-socketio's packet, except that an EVENT whose JSON does not parse (too deep, an
    integer of more digits than Python converts, ...) becomes the event ``BAD_PACKET_EVENT``
    with the reason, keeping its ack id: the client gets an error ack instead of silence."""

    json = _PacketJson

    def decode(self, encoded_packet: Any) -> int:
        try:
            return int(super().decode(encoded_packet))
        except (ValueError, RecursionError) as exc:
            kind: Any = getattr(self, "packet_type", None)
            if kind not in (sio_packet.EVENT, sio_packet.BINARY_EVENT):
                raise
            self.packet_type = sio_packet.EVENT
            reason = (
                str(exc)
                if isinstance(exc, TooDeep)
                else f"payload is not valid JSON: {type(exc).__name__}"
            )
            self.data = [BAD_PACKET_EVENT, reason]
            return 0


def packet_class(max_depth: int) -> type[HubPacket]:
    """HubPacket refusing packets whose data nests deeper than ``max_depth`` (one server's
    ``--max-depth``) with the same message on every Python version."""
    limited = type("_PacketJson", (_PacketJson,), {"max_depth": max_depth})
    return type("HubPacket", (HubPacket,), {"json": limited})


#: WebSocket frames of recently sent texts. A message fanned out to many clients is one Engine.IO
#: packet whose encoding python-engineio caches, so every client's writer sends the *same* str
#: object: the lookup is an identity hit and the frame is built once per replica.
_FRAMES: dict[str, bytes] = {}
_FRAMES_MAX = 512
#: the cache holds at most this many bytes; a larger text is framed for its one send only
_FRAMES_BYTES = 8 << 20
_frames_bytes = 0
#: buffered frames of one connection past which they are written at once and the writer waits
#: for the transport to drain (the flow control aiohttp's own writer applies)
_FLUSH_BYTES = 64 * 1024


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked WebSocket text frame (RFC 6455 section 5.2; a server never masks, so
    the bytes are the same for every client)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


def shared_frame(text: str) -> bytes:
    """The frame of ``text``, from a bounded cache (entries and bytes)."""
    global _frames_bytes
    frame = _FRAMES.get(text)
    if frame is None:
        frame = text_frame(text.encode())
        if len(frame) > _FRAMES_BYTES // 8:
            return frame
        if len(_FRAMES) >= _FRAMES_MAX or _frames_bytes + len(frame) > _FRAMES_BYTES:
            _FRAMES.clear()
            _frames_bytes = 0
        _FRAMES[text] = frame
        _frames_bytes += len(frame)
    return frame


class _PlainWebSocket(_EioWebSocket):  # type: ignore[misc]
    """python-engineio's aiohttp websocket without per-message compression, writing shared
    frames, coalesced: the frames one loop turn sends to a client go out in one write (one
    syscall) instead of one each. Hand-written because aiohttp's writer builds and writes every
    frame per call; the framing is RFC 6455's, flow control is aiohttp's (its drain helper)."""

    _pending: list[bytes]
    _pending_bytes: int = 0
    #: waiting in the flusher's list for this loop turn's write
    _dirty: bool = False
    #: the writer task is waiting for the transport to drain, holding packets it took
    _draining: bool = False

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        request = environ["aiohttp.request"]
        self._pending = []
        self._flusher = _flusher(self.server)
        self._sock = web.WebSocketResponse(
            max_msg_size=self.server.max_http_buffer_size, compress=False
        )
        await self._sock.prepare(request)
        self.environ = environ
        # the Engine.IO socket this websocket serves (the handler is its bound method), so
        # ``enqueue`` can hand it frames directly
        socket = getattr(self.handler, "__self__", None)
        if socket is not None:
            socket._hub_ws = self
        try:
            if isinstance(socket, AsyncSocket):
                await _serve_websocket(socket, self)
            else:
                await self.handler(self)
        finally:
            if socket is not None and socket.__dict__.get("_hub_ws") is self:
                del socket._hub_ws
        return self._sock

    def can_take(self) -> bool:
        """Whether a frame may be buffered directly now: the connection is open, not applying
        back-pressure, and the writer task holds nothing it has yet to send."""
        writer = self._sock._writer
        return not (
            self._draining
            or writer is None
            or writer.protocol._paused
            or writer.transport is None
            or writer.transport.is_closing()
        )

    def push(self, frame: bytes) -> None:
        """Buffer ``frame`` for this loop turn's write (see ``enqueue``)."""
        self._pending.append(frame)
        self._pending_bytes += len(frame)
        if self._pending_bytes >= _FLUSH_BYTES:
            self._flush()
        elif not self._dirty:
            self._dirty = True
            self._flusher.add(self)

    async def send(self, message: Any) -> None:
        writer = self._sock._writer
        if not isinstance(message, str) or writer is None:
            self._flush()
            await super().send(message)
            return
        if writer.transport is None or writer.transport.is_closing():
            raise ConnectionResetError("websocket closed")
        frame = shared_frame(message)
        self._pending.append(frame)
        self._pending_bytes += len(frame)
        if self._pending_bytes >= _FLUSH_BYTES or writer.protocol._paused:
            # aiohttp's flow control: while the socket is not draining, the writer waits, so
            # a slow client's backlog stays in its bounded send queue (see Outbox)
            self._flush()
            if writer.protocol._paused:
                self._draining = True
                try:
                    await writer.protocol._drain_helper()
                finally:
                    self._draining = False
        elif not self._dirty:
            self._dirty = True
            self._flusher.add(self)

    def _flush(self) -> None:
        self._dirty = False
        if not self._pending:
            return
        frames, self._pending, self._pending_bytes = self._pending, [], 0
        writer = self._sock._writer
        if writer is None or writer.transport is None or writer.transport.is_closing():
            return  # the connection is gone; what was not sent is recovered with since
        writer.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))

    async def close(self) -> None:
        self._flush()
        await super().close()


class _Flusher:
    """The websockets with frames buffered in this loop turn, all written by one callback at
    its end: one scheduled callback per turn instead of one per client (a message fanned out
    to every client of a replica buffers a frame for each)."""

    def __init__(self) -> None:
        self.dirty: list[_PlainWebSocket] = []
        self.handle: asyncio.Handle | None = None

    def add(self, ws: _PlainWebSocket) -> None:
        self.dirty.append(ws)
        if self.handle is None:
            self.handle = asyncio.get_running_loop().call_soon(self.run)

    def run(self) -> None:
        self.handle = None
        dirty, self.dirty = self.dirty, []
        for ws in dirty:
            ws._flush()


def _flusher(server: Any) -> _Flusher:
    """The flusher of one Engine.IO server (one event loop)."""
    flusher: _Flusher | None = server.__dict__.get("_hub_flusher")
    if flusher is None:
        flusher = server._hub_flusher = _Flusher()
    return flusher


class _Silence:
    """Ends a websocket's read when nothing arrived from the client for ``limit`` seconds.

    python-engineio bounds every read with a new task and an ``asyncio.wait_for`` (~5% of a
    replica receiving publishes in the 100-channel profile). Here the reader records when a
    frame arrived and one timer per connection checks it, re-armed for what is left; on
    expiry the reading task is cancelled (as ``asyncio.timeout`` does) and the read ends as
    python-engineio's does on its timeout."""

    __slots__ = ("expired", "handle", "last", "limit", "task")

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.last = time.monotonic()
        self.expired = False
        self.task = asyncio.current_task()
        self.handle = asyncio.get_running_loop().call_later(limit, self._check)

    def _check(self) -> None:
        left = self.last + self.limit - time.monotonic()
        if left > 0:
            self.handle = asyncio.get_running_loop().call_later(left, self._check)
        elif self.task is not None:
            self.expired = True
            self.task.cancel()

    def stop(self) -> None:
        self.handle.cancel()


async def _serve_websocket(socket: Any, ws: _PlainWebSocket) -> None:
    """python-engineio 4's ``AsyncSocket._websocket_handler`` (the upgrade from polling, the
    writer task, the read loop, the close), except for the read loop: no task and no
    ``wait_for`` per frame (see ``_Silence``), and a socket.io event with an inline handler is
    handled right there (``HubServer.dispatch_now``) instead of in a task of its own. Frames
    that arrived together are thus read in one go, so publishes that arrive in one loop turn
    reach the broker in that turn (one pipeline). Everything else is python-engineio's code."""
    server = socket.server
    limit = server.max_http_buffer_size
    sio: HubServer | None = server.__dict__.get("_hub_sio")

    async def websocket_wait() -> Any:
        data = await ws.wait()
        if data and len(data) > limit:
            raise ValueError("packet is too large")
        return data

    if socket.connected:
        # the socket was already connected (polling), so this is an upgrade: Engine.IO v4's
        # probe (PING "probe" -> PONG "probe"), then the client's UPGRADE
        socket.upgrading = True  # hold packet sends during the upgrade
        try:
            pkt = await websocket_wait()
        except OSError:
            return
        decoded = eio_packet.Packet(encoded_packet=pkt)
        if decoded.packet_type != eio_packet.PING or decoded.data != "probe":
            server.logger.info("%s: Failed websocket upgrade, no PING packet", socket.sid)
            socket.upgrading = False
            return
        await ws.send(eio_packet.Packet(eio_packet.PONG, data="probe").encode())
        await socket.queue.put(eio_packet.Packet(eio_packet.NOOP))  # end poll
        try:
            pkt = await websocket_wait()
        except OSError:
            socket.upgrading = False
            return
        decoded = eio_packet.Packet(encoded_packet=pkt)
        if decoded.packet_type != eio_packet.UPGRADE:
            socket.upgraded = False
            server.logger.info(
                "%s: Failed websocket upgrade, expected UPGRADE packet, received %s instead.",
                socket.sid,
                pkt,
            )
            socket.upgrading = False
            return
        socket.upgraded = True
        socket.upgrading = False
    else:
        socket.connected = True
        socket.upgraded = True

    async def writer() -> None:
        while True:
            try:
                packets = await socket.poll()
            except eio_exceptions.QueueEmpty:
                break
            if not packets:
                break  # empty packet list returned -> connection closed
            try:
                for pkt in packets:
                    await ws.send(pkt.encode())
            except Exception:
                break
        await ws.close()

    writer_task = asyncio.ensure_future(writer())
    server.logger.info("%s: Upgrade to websocket successful", socket.sid)

    silence = _Silence(server.ping_interval + server.ping_timeout)
    eio_sid = socket.sid
    try:
        while True:
            try:
                p = await websocket_wait()
            except asyncio.CancelledError:
                # our silence timer, or the server stopping: either ends the read, as
                # python-engineio's wait_for does
                if silence.expired and silence.task is not None:
                    silence.task.uncancel()
                break
            except Exception:
                break
            if p is None:
                break  # connection closed by client
            silence.last = time.monotonic()
            # an Engine.IO MESSAGE carrying a socket.io EVENT: its data is the text after the
            # "4" (python-engineio keeps a payload starting with a digit as text)
            if sio is not None and type(p) is str and p.startswith("42"):
                try:
                    if sio.dispatch_now(eio_sid, p[1:]):
                        continue
                except Exception:
                    # as for any packet below: logged, and the connection goes on
                    server.logger.exception("Unknown receive error")
                    continue
            pkt = eio_packet.Packet(encoded_packet=p)
            try:
                await socket.receive(pkt)
            except eio_exceptions.UnknownPacketError:
                pass
            except eio_exceptions.SocketIsClosedError:
                server.logger.info("Receive error -- socket is closed")
                break
            except Exception:
                # if we get an unexpected exception we log the error and exit the connection
                # properly
                server.logger.exception("Unknown receive error")
    finally:
        silence.stop()
    await socket.queue.put(None)  # unlock the writer task so it can exit
    await writer_task
    await socket.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)


def disable_ws_compression(sio: socketio.AsyncServer) -> None:
    """python-engineio picks its websocket wrapper from this table and offers no switch for
    aiohttp's per-message deflate; the subclass above only turns it off."""
    sio.eio._async = {**sio.eio._async, "websocket": _PlainWebSocket}


class _HubSocket(AsyncSocket):  # type: ignore[misc]
    """python-engineio's socket with a cheaper ``poll``: its writer calls poll once per wake-up
    (once per message per client when traffic is light), and the original wraps every wait in
    ``asyncio.wait_for``, a new task and timer each time (~10% of a replica's CPU in fan-out
    profiles). Same contract: the packets waiting, [] once closed, QueueEmpty on timeout."""

    async def poll(self) -> list[Any]:
        queue = self.queue
        try:
            if queue.empty():
                async with asyncio.timeout(self.server.ping_interval + self.server.ping_timeout):
                    first = await queue.get()
            else:
                first = queue.get_nowait()
            queue.task_done()
        except (TimeoutError, asyncio.CancelledError):
            raise eio_exceptions.QueueEmpty() from None
        if first is None:
            return []
        packets = [first]
        while True:
            try:
                pkt = queue.get_nowait()
            except asyncio.QueueEmpty:
                return packets
            queue.task_done()
            if pkt is None:
                queue.put_nowait(None)  # the writer sees it on its next poll
                return packets
            packets.append(pkt)


def adopt_socket(sio: socketio.AsyncServer, sid: str) -> None:
    """Give client ``sid``'s Engine.IO socket the hub's ``poll``. python-engineio creates its
    sockets with a hard-wired class; swapping the class of the live object (a subclass adding
    no state) is the one way in. The writer picks the new poll up on its next call."""
    socket = find_socket(sio, sid)
    if socket is not None and type(socket) is AsyncSocket:
        socket.__class__ = _HubSocket


def find_socket(sio: socketio.AsyncServer, sid: str) -> Any:
    """The Engine.IO socket of socket.io client ``sid`` (None once it is gone)."""
    eio_sid = sio.manager.eio_sid_from_sid(sid, "/")
    return sio.eio.sockets.get(eio_sid)


def is_open(socket: Any) -> bool:
    return not (socket.closed or socket.closing)


def queued(socket: Any) -> int:
    """Packets waiting in the socket's send queue (what its writer has not taken yet)."""
    return int(socket.queue.qsize())


def enqueue(socket: Any, packet: Packet) -> None:
    """Send one packet, synchronously, in call order.

    When the client is on the hub's websocket and nothing is waiting before this packet (the
    send queue is empty, the writer task holds nothing, the connection is not applying
    back-pressure), its frame goes straight into that websocket's buffer, written once per loop
    turn. Otherwise it is queued for python-engineio's writer task, as polling clients, upgrades
    and slow clients always are, so the order of a client's packets is the order of calls and
    the queue length stays the client's backlog (see Outbox). The writer task's path costs a
    task wake-up, a queue round trip and an ``asyncio.timeout`` per client per loop turn: about
    a quarter of a replica's CPU in the one-channel fan-out profile (docs/benchmarks-hub.md)."""
    ws = socket.__dict__.get("_hub_ws")
    if (
        ws is not None
        and socket.upgraded
        and not socket.upgrading
        and not packet.binary
        and socket.queue.empty()
        and ws.can_take()
    ):
        ws.push(packet_frame(packet))
        return
    socket.queue.put_nowait(packet)


def push_live(socket: Any, packet: Packet) -> bool:
    """``is_open`` + ``queued`` + ``enqueue`` in one call for fan-out's common case: True when
    ``packet`` went straight into the open websocket's buffer for this loop turn (the
    conditions of ``enqueue``'s direct path, with the send queue empty); False, with nothing
    done, otherwise: the caller then takes the full path. Routing records to clients was ~9%
    of a replica in the 100-channel profile, a third of it these separate calls."""
    ws = socket.__dict__.get("_hub_ws")
    if (
        ws is None
        or socket.closed
        or socket.closing
        or not socket.upgraded
        or socket.upgrading
        or packet.binary
        or not socket.queue.empty()
        or not ws.can_take()
    ):
        return False
    ws.push(packet_frame(packet))
    return True


def packet_frame(packet: Packet) -> bytes:
    """The WebSocket frame of a text packet, built once per packet object (a fanned-out message
    is one packet for all its receivers)."""
    frame: bytes | None = packet.__dict__.get("_hub_frame")
    if frame is None:
        frame = packet._hub_frame = text_frame(packet.encode().encode())
    return frame


def drop_queued(socket: Any) -> int:
    """Empty the socket's send queue; how many packets were dropped."""
    dropped = 0
    while True:
        try:
            socket.queue.get_nowait()
        except asyncio.QueueEmpty:
            return dropped
        socket.queue.task_done()
        dropped += 1


def eio_sid(socket: Any) -> str:
    return str(socket.sid)


#: the reason a websocket closed for the unfinished-message budget is given (close code 1013)
UNFINISHED_REASON = "unfinished messages over the hub's budget: try again later"
#: seconds a connection refused by the budget has to take its close frame before it is closed
REFUSED_GRACE = 1.0


def close_frame(code: int, reason: str) -> bytes:
    """An unmasked (server) RFC 6455 close frame."""
    payload = struct.pack("!H", code) + reason.encode()[:123]
    return bytes((0x88, len(payload))) + payload


class _MeteredReader:
    """aiohttp's WebSocket frame reader behind a ``MessageMeter``: what a read would leave held
    in the unfinished message is asked of the replica's ``UnfinishedBudget`` before aiohttp
    sees it. Refused, the read is dropped and the connection failed (RFC 6455 7.1.7): close
    frame 1013, then the socket closed, without waiting on a client that may never answer."""

    __slots__ = ("_budget", "_handler", "_meter", "_reader", "refused")

    def __init__(self, reader: Any, budget: UnfinishedBudget, handler: _HubRequestHandler):
        self._reader = reader
        self._budget = budget
        self._handler = handler
        self._meter = MessageMeter()
        self.refused = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self.refused:
            return True, b""
        if not self._budget.hold(self, self._meter.feed(data)):
            self.refused = True
            self._handler.unfinished_refused(self._budget)
            return True, b""
        result: tuple[bool, bytes] = self._reader.feed_data(data)
        return result

    def feed_eof(self) -> None:
        self._budget.release(self)
        self._reader.feed_eof()


class _HubRequestHandler(RequestHandler):
    """aiohttp's HTTP/1.1 connection with a bound on its first request head and the hub's error
    shape for what aiohttp answers itself (a head it cannot parse, a header over 8 190 bytes):
    ``{"error": ...}`` as JSON, one debug line in the log, no traceback (they are the client's
    errors). aiohttp has no head timeout (its keep-alive timeout starts after a first request):
    1 000 connections trickling a byte a second held the hub at its descriptor limit. Once the
    connection is a websocket, its unfinished messages count against the replica's
    ``UnfinishedBudget`` (``_MeteredReader``)."""

    head_timeout = 10.0
    unfinished: UnfinishedBudget | None = None
    _head_timer: asyncio.TimerHandle | None = None
    _metered: _MeteredReader | None = None
    _refused_timer: asyncio.TimerHandle | None = None

    def set_parser(self, parser: Any, data_received_cb: Callable[[], None] | None = None) -> None:
        if self.unfinished is not None:
            self._metered = parser = _MeteredReader(parser, self.unfinished, self)
        super().set_parser(parser, data_received_cb)

    def unfinished_refused(self, budget: UnfinishedBudget) -> None:
        transport = self.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        log.warning(
            "closed a websocket from %s (1013): its unfinished message would take the bytes held "
            "in unfinished messages past --max-unfinished %d (%d refused so far)",
            peer[0] if isinstance(peer, tuple) else "?",
            budget.limit,
            budget.refused,
        )
        if transport is not None and not transport.is_closing():
            transport.write(close_frame(1013, UNFINISHED_REASON))
            # closed a moment later, not now: closing a socket with unread input (the client
            # is mid-message) resets it, and the reset can overtake the close frame; meanwhile
            # aiohttp drops what arrives
            self._refused_timer = asyncio.get_running_loop().call_later(
                REFUSED_GRACE, transport.close
            )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._head_timer = asyncio.get_running_loop().call_later(
            self.head_timeout, self._head_expired
        )

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_timer is not None and self._messages:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._refused_timer is not None:
            self._refused_timer.cancel()
        if self._metered is not None and self.unfinished is not None:
            self.unfinished.release(self._metered)  # whether or not aiohttp still feeds eof
        super().connection_lost(exc)

    def _head_expired(self) -> None:
        self._head_timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        body = b'{"error": "request head timeout"}'
        transport.write(
            b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        transport.close()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            # not the client's doing (the app's middleware answers handler failures itself)
            self.logger.error("%s answered %d: %r", request.path, status, exc)
        else:
            self.logger.debug("bad request from %s: %s", request.remote, message or exc)
        if request.writer.output_size > 0:
            raise ConnectionError("the response was sent already")
        text = message.strip().splitlines()[0] if message and message.strip() else ""
        response = web.json_response(
            {"error": text or _REASONS.get(status, "error")}, status=status
        )
        response.force_close()
        return response


_REASONS = {400: "bad request", 408: "request timeout", 500: "internal error"}


class _HubServer(web.Server):
    """aiohttp's connection factory, making ``_HubRequestHandler`` connections."""

    head_timeout = 10.0
    unfinished: UnfinishedBudget | None = None

    def __call__(self) -> RequestHandler:
        handler = _HubRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.head_timeout = self.head_timeout
        handler.unfinished = self.unfinished
        return handler


class HubRunner(web.AppRunner):
    """aiohttp's application runner, serving connections with ``_HubRequestHandler``. aiohttp
    takes no handler class: the server it made (before any connection) becomes a
    ``_HubServer``, a subclass adding no state of its own."""

    def __init__(
        self,
        app: web.Application,
        *,
        head_timeout: float = 10.0,
        unfinished: UnfinishedBudget | None = None,
        **kwargs: Any,
    ):
        super().__init__(app, **kwargs)
        self._head_timeout = head_timeout
        self._unfinished = unfinished

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _HubServer
        assert isinstance(server, _HubServer)
        server.head_timeout = self._head_timeout
        server.unfinished = self._unfinished
        return server
