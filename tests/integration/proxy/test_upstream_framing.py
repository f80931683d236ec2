"""Upstream responses of every framing, and upstream failures (502/504), against a raw HTTP
backend written here because whoami always answers with a Content-Length."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.integration.proxy.conftest import Proxy, raw_exchange, start_proxy
from tests.support.procs import Procs
from tests.support.rawhttp import recv_head

BIG = 20 * 1024 * 1024


class Handler(socketserver.BaseRequestHandler):
    """Answers by path: /close (close-delimited), /chunked (BIG bytes in chunks), /early
    (103 then 200), /garbage (not HTTP), /hang (never answers), anything else: 200."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        head, _ = recv_head(sock)
        if not head:
            return
        path = head.split(b" ", 2)[1]
        if path == b"/close":
            sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-close-body")
        elif path == b"/chunked":
            sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            block = b"c" * 65536
            for _ in range(BIG // len(block)):
                sock.sendall(b"%x\r\n%b\r\n" % (len(block), block))
            sock.sendall(b"0\r\n\r\n")
        elif path == b"/early":
            sock.sendall(
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            )
        elif path == b"/garbage":
            sock.sendall(b"SMTP ready\r\n\r\n")
        elif path == b"/slow":
            time.sleep(1.0)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")
        elif path == b"/500":
            sock.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops")
        elif path == b"/stall":
            # reads nothing of the body and holds the connection well past the test's 1.5 s of
            # sending, even on a loaded machine (at 3 s, a slow run saw the close, a 502, and
            # the proxy then drained the rest of the body, as it should)
            time.sleep(10)
        elif path == b"/hang":
            sock.recv(1)
        else:
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain")


@pytest.fixture(scope="module")
def raw_backend() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxy(procs: Procs, raw_backend: str) -> Proxy:
    config = procs.tmp / "t.yaml"
    # one backend: without panic-threshold 0 a passively ejected only backend would be
    # offered again (the panic rule, tested in test_passive_health.py)
    config.write_text(
        "timeouts: {response: 1.5}\nlimits: {max-connections: 4}\n"
        f"pools:\n  default:\n    backends: [{raw_backend}]\n    health: {{panic-threshold: 0}}\n"
    )
    return start_proxy(
        procs, {"raw": raw_backend}, "--config", str(config), "--no-health", admin=False
    )


def read_all(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(1 << 20):
        out += chunk
    return out


def dechunk(body: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out
        out += body[:size]
        body = body[size + 2 :]


def test_close_delimited_body_is_rechunked_and_keeps_the_client_connection(proxy: Proxy) -> None:
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as s:
        s.sendall(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
        s.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = read_all(s)
    first, _, rest = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in first
    assert dechunk(rest).startswith(b"until-close-body")
    assert rest.count(b"HTTP/1.1 200 OK") == 1 and rest.endswith(b"plain")


def test_close_delimited_body_for_http10_client(proxy: Proxy) -> None:
    data = raw_exchange(proxy.port, b"GET /close HTTP/1.0\r\n\r\n")
    assert data.endswith(b"\r\n\r\nuntil-close-body<EOF>")


def test_big_chunked_download_is_streamed(proxy: Proxy) -> None:
    with socket.create_connection((proxy.host, proxy.port), timeout=30) as s:
        s.sendall(b"GET /chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = read_all(s)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert len(dechunk(body)) == BIG


def test_interim_response_is_relayed_before_the_final_one(proxy: Proxy) -> None:
    data = raw_exchange(proxy.port, b"GET /early HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 103 Early Hints\r\n")
    assert b"HTTP/1.1 200 OK\r\n" in data and data.endswith(b"ok<EOF>")


def test_garbage_from_the_backend_is_a_502(proxy: Proxy) -> None:
    data = raw_exchange(proxy.port, b"GET /garbage HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 502 Bad Gateway\r\n") and b"invalid HTTP" in data


def test_silent_backend_is_a_504(proxy: Proxy) -> None:
    data = raw_exchange(proxy.port, b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n") and data.endswith(b"<EOF>")


def test_sigterm_lets_the_request_in_flight_finish(procs: Procs, proxy: Proxy) -> None:
    import signal

    with socket.create_connection((proxy.host, proxy.port), timeout=10) as s:
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        proxy.proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
        data = read_all(s)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"slow")
    assert b"Connection: close" in data  # no keep-alive promised while stopping
    assert proxy.proc.wait(timeout=10) == 0  # type: ignore[attr-defined]


def test_connections_beyond_the_limit_get_503(proxy: Proxy) -> None:
    held = [socket.create_connection((proxy.host, proxy.port), timeout=5) for _ in range(4)]
    try:
        time.sleep(0.2)
        data = raw_exchange(proxy.port, b"")
        assert data.startswith(b"HTTP/1.1 503 ") and b"too many connections" in data
    finally:
        for s in held:
            s.close()
    time.sleep(0.2)
    assert raw_exchange(
        proxy.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ).endswith(b"plain<EOF>")


def five_hundreds(port: int, n: int) -> list[bytes]:
    return [
        raw_exchange(port, b"GET /500 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[:12]
        for _ in range(n)
    ]


def test_repeated_5xx_ejects_the_backend(proxy: Proxy) -> None:
    # passive-failures defaults to 3: the fourth request finds no healthy backend (a 5xx is an
    # answer, so the backend counts as seen up from the first one)
    assert five_hundreds(proxy.port, 4) == [b"HTTP/1.1 500"] * 3 + [b"HTTP/1.1 503"]


def test_passive_ejection_expires_without_active_probes(procs: Procs, raw_backend: str) -> None:
    # No probe will ever say the backend is back: only eject-seconds passing can, delivered to
    # the core pool as TICK events by the health loop (which runs without probes too).
    config = procs.tmp / "expiry.yaml"
    config.write_text(
        f"pools:\n  raw:\n    backends: [{raw_backend}]\n"
        "    health: {active: false, passive: true, eject-seconds: 0.5, panic-threshold: 0}\n"
    )
    proxy = start_proxy(procs, {}, "--config", str(config), admin=False)
    assert five_hundreds(proxy.port, 4) == [b"HTTP/1.1 500"] * 3 + [b"HTTP/1.1 503"]
    answers = []
    for _ in range(100):  # bounded: ~10 s at most
        answers += five_hundreds(proxy.port, 1)
        if answers[-1] == b"HTTP/1.1 500":
            break
        time.sleep(0.1)
    assert answers[-1] == b"HTTP/1.1 500", "the ejected backend never came back"


def test_twin_without_passive_health_5xx_keeps_the_backend(procs: Procs, raw_backend: str) -> None:
    config = procs.tmp / "nopassive.yaml"
    config.write_text(
        f"pools:\n  raw:\n    backends: [{raw_backend}]\n    health: {{active: false, passive: false}}\n"
    )
    proxy = start_proxy(procs, {}, "--config", str(config), admin=False)
    assert five_hundreds(proxy.port, 4) == [b"HTTP/1.1 500"] * 4


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slow_client_gets_back_pressure_not_a_buffered_body(proxy: Proxy) -> None:
    """The client reads nothing for a while: the proxy must stop reading the backend (its
    memory stays flat) instead of holding the whole 20 MiB body, then deliver all of it."""
    pid = proxy.proc.pid  # type: ignore[attr-defined]
    raw_exchange(proxy.port, b"GET /plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    before = rss_kib(pid)
    with socket.create_connection((proxy.host, proxy.port), timeout=30) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(b"GET /chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(1.5)  # the backend pushes as fast as it can meanwhile
        grown = rss_kib(pid) - before
        data = read_all(s)
    assert grown < 8 * 1024, f"the proxy buffered {grown} KiB for a client that did not read"
    assert len(dechunk(data.partition(b"\r\n\r\n")[2])) == BIG


def test_slow_backend_gets_back_pressure_on_an_upload(procs: Procs, raw_backend: str) -> None:
    """The backend reads nothing: the proxy must stop reading the client's body (the client's
    sends stall) instead of holding it in memory."""
    proxy = start_proxy(procs, {"raw": raw_backend}, "--no-health", admin=False)
    pid = proxy.proc.pid  # type: ignore[attr-defined]
    # the warm-up's backend says it closes (/close): a pooled connection the backend closed
    # unannounced could be picked for the POST before its FIN is read, and a POST that met a
    # dead connection is answered 502 and not re-sent, after which the proxy drains the body
    raw_exchange(proxy.port, b"GET /close HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    before = rss_kib(pid)
    with socket.create_connection((proxy.host, proxy.port), timeout=30) as s:
        # kernel socket buffers on loopback absorb ~20 MiB along the way, so offer far more
        upload = 200 * 1024 * 1024
        s.sendall(b"POST /stall HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % upload)
        s.setblocking(False)
        sent, block = 0, b"u" * 65536
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline and sent < upload:
            try:
                sent += s.send(block)
            except BlockingIOError:
                time.sleep(0.01)
        grown = rss_kib(pid) - before
    assert sent < upload, "the whole body went through although the backend reads nothing"
    assert grown < 8 * 1024, f"the proxy buffered {grown} KiB of a body nobody reads"
