"""SIGTERM: stop accepting, close what has nothing in flight at once, drain live exchanges.

Each proxy here gets a long ``--drain-timeout`` (30 s), so a proxy that waited out a half-closed
client would still be running at the hang guard (15 s) and the test would fail; the bound is a
guard against a hang, not a timing assertion.
"""

from __future__ import annotations

import json
import signal
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.integration.proxy.conftest import start_proxy
from tests.support.procs import Procs
from tests.support.rawhttp import recv_head

DRAIN = "30"
HANG_GUARD = 15


class SlowHandler(socketserver.BaseRequestHandler):
    """/slow answers after 1 s; anything else never answers (a long-poll with no news)."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        head, _ = recv_head(sock)
        if not head:
            return
        if head.split(b" ", 2)[1] == b"/slow":
            time.sleep(1.0)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")
        sock.recv(1)  # hold the connection until the proxy lets go


@pytest.fixture(scope="module")
def slow_backend() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SlowHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def read_all(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def recv_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body (all the backends here send one)."""
    head, body = recv_head(sock)
    assert head, body
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize("affinity", ["cookie", "engineio"])
def test_half_closed_socketio_long_poll_does_not_hold_up_sigterm(
    procs: Procs, affinity: str
) -> None:
    """A socket.io client exits while its long-poll GET waits: the proxy stops at once."""
    proxy = start_proxy(
        procs, {"a": procs.whoami("a")}, "--affinity", affinity, "--drain-timeout", DRAIN,
        admin=False,
    )  # fmt: skip
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as s:
        s.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
        open_packet = recv_response(s)
        sid = json.loads(open_packet.partition(b"\r\n\r\n")[2][1:])["sid"]
        cookie = b""
        for line in open_packet.split(b"\r\n"):
            if line.lower().startswith(b"set-cookie:"):
                cookie = b"Cookie: " + line.split(b":", 1)[1].split(b";")[0].strip() + b"\r\n"
        target = b"/socket.io/?EIO=4&transport=polling&sid=" + sid.encode()
        s.sendall(
            b"POST " + target + b" HTTP/1.1\r\nHost: x\r\n" + cookie
            + b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n40"
        )  # fmt: skip
        assert recv_response(s).startswith(b"HTTP/1.1 200 ")
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + cookie + b"\r\n")
        assert b"40{" in recv_response(s)  # the connect answer; the next GET waits
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + cookie + b"\r\n")
        time.sleep(0.3)
        s.shutdown(socket.SHUT_WR)  # the client exits: FIN with the long-poll pending
        time.sleep(0.3)
        proxy.proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
        assert proxy.proc.wait(timeout=HANG_GUARD) == 0  # type: ignore[attr-defined]


def test_half_closed_client_of_a_silent_backend_does_not_hold_up_sigterm(
    procs: Procs, slow_backend: str
) -> None:
    proxy = start_proxy(
        procs, {"raw": slow_backend}, "--no-health", "--drain-timeout", DRAIN, admin=False
    )
    idle = socket.create_connection((proxy.host, proxy.port), timeout=10)  # keep-alive, idle
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as s:
        s.sendall(b"GET /never HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        s.shutdown(socket.SHUT_WR)
        time.sleep(0.3)
        proxy.proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
        assert proxy.proc.wait(timeout=HANG_GUARD) == 0  # type: ignore[attr-defined]
        assert read_all(s) == b""  # dropped, not answered
    assert read_all(idle) == b""  # the idle keep-alive connection was closed
    idle.close()


def test_twin_live_request_completes_during_the_drain(procs: Procs, slow_backend: str) -> None:
    """The same long drain deadline: a client still connected gets its whole response."""
    proxy = start_proxy(
        procs, {"raw": slow_backend}, "--no-health", "--drain-timeout", DRAIN, admin=False
    )
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as s:
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        proxy.proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
        data = read_all(s)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nslow")
    assert b"Connection: close" in data
    assert proxy.proc.wait(timeout=HANG_GUARD) == 0  # type: ignore[attr-defined]


def test_bad_drain_timeout_is_a_usage_error(procs: Procs) -> None:
    import subprocess
    import sys

    from tests.support.procs import limpet_env

    result = subprocess.run(
        [sys.executable, "-m", "limpet", "proxy", "--backend", "127.0.0.1:1",
         "--drain-timeout", "-1"],
        env=limpet_env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2 and "--drain-timeout" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


COUNT = threading.Lock()


def count(out: dict[str, int], key: str) -> None:
    with COUNT:
        out[key] += 1


def keep_alive_loop(port: int, started: threading.Barrier, out: dict[str, int]) -> None:
    """Requests one after another on a kept-alive connection, reconnecting when a response says
    ``Connection: close``, until a connect is refused (the proxy stopped listening: that
    request was never sent). Anything else is a request lost at the signal."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    n = 0
    while True:
        try:
            conn.request("GET", "/")
        except ConnectionRefusedError:
            break
        except OSError:
            count(out, "failed")
            break
        try:
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):
            count(out, "failed")
            break
        count(out, "answered")
        if (resp.getheader("Connection") or "").lower() == "close":
            count(out, "told_close")
            conn.close()  # the next request goes on a new connection
        n += 1
        if n == 20:
            started.wait(timeout=10)  # every client is in its loop: the signal may come


def test_keep_alive_clients_are_told_to_close_and_lose_no_request_at_sigterm(
    procs: Procs, three: dict[str, str]
) -> None:
    """Eight clients loop requests on keep-alive connections while SIGTERM arrives: a response
    on a reused connection says ``Connection: close`` and the proxy closes after it, an idle
    connection's next request is still answered (not reset), and every request is either
    answered or refused at connect; none fails."""
    proxy = start_proxy(procs, three, admin=False)
    clients = 8
    started = threading.Barrier(clients + 1)
    out = {"answered": 0, "failed": 0, "told_close": 0}
    threads = [
        threading.Thread(target=keep_alive_loop, args=(proxy.port, started, out), daemon=True)
        for _ in range(clients)
    ]
    for t in threads:
        t.start()
    started.wait(timeout=10)
    proxy.proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    for t in threads:
        t.join(timeout=HANG_GUARD)
        assert not t.is_alive()
    assert proxy.proc.wait(timeout=HANG_GUARD) == 0  # type: ignore[attr-defined]
    assert out["failed"] == 0, out
    assert out["told_close"] >= 1, out
    assert out["answered"] >= clients * 20, out
