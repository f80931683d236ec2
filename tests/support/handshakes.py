"""Aborted TLS handshakes, as a flood makes them: a real ClientHello (Python's ssl module on a
MemoryBIO), the server's first flight awaited (its keys and buffers exist by then), then a reset
(SO_LINGER 0). Used by the memory test and bench/proxy/tls_memory.py; and a process's RSS."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from pathlib import Path


def client_hello(server_name: str = "a.test") -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:  # it waits for the ServerHello: the ClientHello is out
        pass
    return outgoing.read()


async def abort_one(port: int, hello: bytes) -> bool:
    """One aborted handshake; whether the server answered before the reset."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(hello)
        return bool(await asyncio.wait_for(reader.read(1), 10))
    except (OSError, TimeoutError):
        return False
    finally:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()


async def burst(port: int, total: int, at_once: int) -> int:
    """``total`` aborted handshakes, ``at_once`` at a time; how many the server answered."""
    hello, answered = client_hello(), 0
    for start in range(0, total, at_once):
        n = min(at_once, total - start)
        answered += sum(await asyncio.gather(*(abort_one(port, hello) for _ in range(n))))
    return answered


def rss_kib(pid: int) -> int:
    """The resident set of a process (/proc/PID/status VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for {pid}")
