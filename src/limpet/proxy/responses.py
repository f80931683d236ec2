"""Local responses the proxy itself answers with: what the client did wrong (400/431), what the
upstream did wrong (502/504), what nothing can serve (503). Plain text bodies that say why."""

from __future__ import annotations

REASONS = {
    100: "Continue",
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def local_response(
    status: int, text: str, *, close: bool = True, extra: list[tuple[bytes, bytes]] | None = None
) -> bytes:
    """A complete HTTP/1.1 response with a text/plain body."""
    body = (text.rstrip("\n") + "\n").encode()
    head = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}".encode(),
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Length: " + str(len(body)).encode(),
        b"Connection: close" if close else b"Connection: keep-alive",
    ]
    for name, value in extra or ():
        head.append(name + b": " + value)
    return b"\r\n".join(head) + b"\r\n\r\n" + body


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
