"""The hub's one adapter onto python-engineio / python-socketio internals.

The hub queues packets straight onto Engine.IO send queues (fan-out without a task per client),
swaps the aiohttp websocket wrapper (no per-message deflate) and decodes socket.io packets so a
payload its JSON parser refuses still gets an error ack. None of that is public API of those
libraries: every such reach is here, against the major versions pinned in pyproject.toml
(python-engineio 4, python-socketio 5), so an upgrade is checked in one file.
"""

from __future__ import annotations

import asyncio
from typing import Any

import socketio
from aiohttp import web
from engineio import packet as eio_packet
from engineio.async_drivers.aiohttp import WebSocket as _EioWebSocket
from engineio.packet import Packet as Packet  # the hub's packet type, re-exported
from socketio import packet as sio_packet

#: the event name a socket.io EVENT whose JSON could not be parsed is delivered under
BAD_PACKET_EVENT = "limpet:bad-packet"


def event_packet(event: str, payload: Any) -> Packet:
    """One socket.io event as an Engine.IO packet, encoded once however many clients get it.
    Raises what the JSON encoder raises (RecursionError, ValueError, TypeError)."""
    encoded = sio_packet.Packet(sio_packet.EVENT, data=[event, payload]).encode()
    packet: Packet = eio_packet.Packet(eio_packet.MESSAGE, data=encoded)
    return packet


class HubPacket(sio_packet.Packet):  # type: ignore[misc]
    """python-socketio's packet, except that an EVENT whose JSON does not parse (too deep, an
    integer of more digits than Python converts, ...) becomes the event ``BAD_PACKET_EVENT``
    with the reason, keeping its ack id: the client gets an error ack instead of silence."""

    def decode(self, encoded_packet: Any) -> int:
        try:
            return int(super().decode(encoded_packet))
        except (ValueError, RecursionError) as exc:
            kind: Any = getattr(self, "packet_type", None)
            if kind not in (sio_packet.EVENT, sio_packet.BINARY_EVENT):
                raise
            self.packet_type = sio_packet.EVENT
            self.data = [BAD_PACKET_EVENT, f"payload is not valid JSON: {type(exc).__name__}"]
            return 0


class _PlainWebSocket(_EioWebSocket):  # type: ignore[misc]
    """python-engineio's aiohttp websocket without per-message compression."""

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = web.WebSocketResponse(
            max_msg_size=self.server.max_http_buffer_size, compress=False
        )
        await self._sock.prepare(request)
        self.environ = environ
        await self.handler(self)
        return self._sock


def disable_ws_compression(sio: socketio.AsyncServer) -> None:
    """python-engineio picks its websocket wrapper from this table and offers no switch for
    aiohttp's per-message deflate; the subclass above only turns it off."""
    sio.eio._async = {**sio.eio._async, "websocket": _PlainWebSocket}


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
    """Queue one packet for the socket's writer, synchronously (keeps call order)."""
    socket.queue.put_nowait(packet)


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
