"""SIGTERM exits 0 with a WebSocket tunnel in any half-closed state. The backend half-closed
its side (its FIN was passed on to the client with write_eof); the 1001 close frame at the
drain deadline was then written after write_eof: RuntimeError, exit 1."""

from __future__ import annotations

import signal
import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from tests.integration.proxy.conftest import start_proxy
from tests.support.procs import Procs
from tests.support.rawhttp import recv_head

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class HalfClosingHandler(socketserver.BaseRequestHandler):
    """Accepts the upgrade, then ends its side of the tunnel (``half``) or keeps it (twin)."""

    half = True

    def handle(self) -> None:
        sock: socket.socket = self.request
        head, _ = recv_head(sock)
        if not head:
            return
        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        )
        if self.server.half:  # type: ignore[attr-defined]
            sock.shutdown(socket.SHUT_WR)
        sock.recv(1)  # hold the connection until the proxy lets go


@pytest.fixture(scope="module", params=[True, False], ids=["backend-half-closed", "open"])
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[str, bool]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), HalfClosingHandler)
    server.half = request.param  # type: ignore[attr-defined]
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", request.param
    finally:
        server.shutdown()
        server.server_close()


def test_sigterm_exits_0_with_a_half_closed_websocket(
    procs: Procs, backend: tuple[str, bool]
) -> None:
    url, half = backend
    proxy = start_proxy(procs, {"b": url}, "--no-health", "--drain-timeout", "0.2")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as client:
        client.sendall(UPGRADE)
        head, rest = recv_head(client)
        assert head.startswith(b"HTTP/1.1 101"), head
        if half:  # the backend's FIN has come through the tunnel (write_eof on our side)
            assert rest == b"" and client.recv(1) == b""
        # (twin, the open tunnel: the 101 says it is in place, and both ways stay open)
        proc = proxy.proc
        proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
        code = proc.wait(timeout=15)  # type: ignore[attr-defined]
    output = procs.output(proc)  # type: ignore[arg-type]
    assert code == 0, output
    assert "Traceback" not in output and "after write_eof" not in output, output
