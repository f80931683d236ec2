"""A raw WebSocket client for hostile-client tests: RFC 6455 client frames built by hand (so a
test can send what no client library would, such as a message that never finishes) and the
upgrade over a plain asyncio stream."""

from __future__ import annotations

import asyncio
import base64
import os
import struct

TEXT, CONT, BINARY, CLOSE, PING = 0x1, 0x0, 0x2, 0x8, 0x9


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    """A client frame as RFC 6455 puts it on the wire (masked unless told, each length form)."""
    n = len(payload)
    head = bytes((0x80 * fin | opcode,))
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes((bit | n,))
    elif n < 1 << 16:
        head += bytes((bit | 126,)) + struct.pack("!H", n)
    else:
        head += bytes((bit | 127,)) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    stream = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")
    return head + key + masked


async def open_websocket(url: str, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A websocket to ``url`` (http://host:port) at ``path``, upgraded (101 read)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The next (unmasked, server) frame: its opcode and payload."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    return b0 & 0x0F, await reader.readexactly(n)


async def close_code(reader: asyncio.StreamReader) -> tuple[int, str]:
    """Read frames up to the server's close frame: its code and reason."""
    while True:
        opcode, payload = await read_frame(reader)
        if opcode == CLOSE:
            return struct.unpack("!H", payload[:2])[0], payload[2:].decode()
