"""An HTTP/1.1 backend for what ``limpet whoami`` never sends: trailers and interim responses.

Run as a process: ``python -m tests.support.extrasapp --port PORT``. Keep-alive; by path:

- ``/trailers``: 200, a chunked body ``hello``, then a trailer section: ``Grpc-Status: 0`` and
  ``Grpc-Message: fine`` (relayed), ``Content-Type`` and ``Set-Cookie`` (fields RFC 9110
  §6.5.1 keeps out of trailers: a proxy drops them);
- ``/early``: ``103 Early Hints`` with a ``Link`` field, then the 200;
- anything else: 200 whose body is the request exactly as it arrived, head, body and the
  chunked body's trailer section included (what the proxy forwarded, byte for byte).
"""

from __future__ import annotations

import argparse
import asyncio

TRAILERS = (
    b"Grpc-Status: 0\r\n"
    b"Grpc-Message: fine\r\n"
    b"Content-Type: text/forbidden-in-trailers\r\n"
    b"Set-Cookie: smuggled=1\r\n"
)
EARLY = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    """One request as it arrived (None at the connection's end)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip().lower()
    raw = head
    if fields.get(b"transfer-encoding", b"").endswith(b"chunked"):
        while True:
            line = await reader.readuntil(b"\r\n")
            raw += line
            size = int(line.split(b";")[0], 16)
            if size == 0:
                break
            raw += await reader.readexactly(size + 2)
        while True:  # the trailer section, up to its blank line
            line = await reader.readuntil(b"\r\n")
            raw += line
            if line == b"\r\n":
                break
    elif b"content-length" in fields:
        raw += await reader.readexactly(int(fields[b"content-length"]))
    return raw


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while (raw := await read_request(reader)) is not None:
            path = raw.split(b" ", 2)[1]
            if path == b"/trailers":
                writer.write(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                    b"Content-Type: text/plain\r\n\r\n6\r\nhello\n\r\n0\r\n" + TRAILERS + b"\r\n"
                )
            else:
                if path == b"/early":
                    writer.write(EARLY)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    b"Content-Length: %d\r\n\r\n%b" % (len(raw), raw)
                )
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
