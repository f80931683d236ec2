"""Raw-socket HTTP for tests that must see bytes exactly as they cross the wire."""

from __future__ import annotations

import socket


def recv_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read up to the blank line that ends an HTTP head: (head, bytes after it).

    The head is empty when the peer closed before sending a whole one.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b"", data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest
