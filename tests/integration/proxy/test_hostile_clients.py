"""Faults found by probing the proxy with hostile clients, each against a real proxy process and a
raw backend that records every request it receives (whoami cannot close without answering)."""

from __future__ import annotations

import itertools
import re
import select
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.proxy.conftest import Proxy, raw_exchange, start_proxy
from tests.support.procs import Procs
from tests.support.rawhttp import recv_head


class Recorder(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RecordingHandler)
        self.heads: list[bytes] = []
        self.conns: list[int] = []  # which backend connection carried each head (parallel)
        self.serials = itertools.count()
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def count(self, path: bytes) -> int:
        with self.lock:
            return sum(1 for h in self.heads if h.split(b" ", 2)[1] == path)

    def connections(self, path: bytes) -> list[int]:
        with self.lock:
            return [
                c
                for h, c in zip(self.heads, self.conns, strict=True)
                if h.split(b" ", 2)[1] == path
            ]


class RecordingHandler(socketserver.BaseRequestHandler):
    """Answers by path: /drop (closes without answering), /upload (reads the Content-Length
    body, then answers with its size), /silent (reads the body, never answers), else 200."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        server: Recorder = self.server  # type: ignore[assignment]
        rest = b""
        serial = next(server.serials)
        while True:
            try:
                head, rest = recv_head_after(sock, rest)
            except OSError:
                return
            if not head:
                return
            with server.arrived:
                server.heads.append(head)
                server.conns.append(serial)
                server.arrived.notify_all()
            path = head.split(b" ", 2)[1]
            if path == b"/drop":
                return
            if re.search(rb"(?im)^transfer-encoding: *chunked", head):
                while b"\r\n0\r\n\r\n" not in b"\r\n" + rest:  # enough for these tests
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    rest += chunk
                _, _, rest = (b"\r\n" + rest).partition(b"\r\n0\r\n\r\n")
            m = re.search(rb"(?im)^content-length: *(\d+)", head)
            need = int(m.group(1)) if m else 0
            while len(rest) < need:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                rest += chunk
            body, rest = rest[:need], rest[need:]
            if path == b"/silent":
                sock.recv(1)
                return
            text = b"%d" % len(body) if path == b"/upload" else b"ok"
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(text), text))


def recv_head_after(sock: socket.socket, data: bytes) -> tuple[bytes, bytes]:
    if b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        return head, rest
    head, rest = recv_head(sock)
    return (data + head, rest) if head else (b"", b"")


@pytest.fixture
def recorders() -> Iterator[list[Recorder]]:
    servers = [Recorder() for _ in range(3)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    try:
        yield servers
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


def proxy_for(procs: Procs, recorders: list[Recorder], config: str = "") -> Proxy:
    path = procs.tmp / "hostile.yaml"
    path.write_text(config or "timeouts: {response: 1}\n")
    backends = {f"r{i}": r.url for i, r in enumerate(recorders)}
    return start_proxy(procs, backends, "--config", str(path), "--no-health", "--affinity", "none")


def total(recorders: list[Recorder], path: bytes) -> int:
    return sum(r.count(path) for r in recorders)


# -- a POST is never sent twice -------------------------------------------------------------------
def test_post_whose_backend_closes_is_answered_502_and_sent_once(
    procs: Procs, recorders: list[Recorder]
) -> None:
    proxy = proxy_for(procs, recorders)
    for request in (
        b"POST /drop HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"PATCH /drop HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    ):
        before = total(recorders, b"/drop")
        answer = raw_exchange(proxy.port, request)
        assert answer.startswith(b"HTTP/1.1 502 "), answer
        # RFC 9110 §9.2.2: it reached one backend, which may have acted on it: never again
        assert total(recorders, b"/drop") == before + 1


def test_twin_an_idempotent_get_is_tried_on_another_backend(
    procs: Procs, recorders: list[Recorder]
) -> None:
    proxy = proxy_for(procs, recorders)
    answer = raw_exchange(proxy.port, b"GET /drop HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 502 "), answer
    assert total(recorders, b"/drop") > 1


# -- a request written on a pooled connection is sent again only if that is safe --------------
def warm_then(port: int, request: bytes) -> bytes:
    """One client connection: a GET that leaves an upstream connection in the pool, then
    ``request`` (which takes that pooled connection); the answer to ``request``."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /warm HTTP/1.1\r\nHost: x\r\n\r\n")
        head, rest = recv_head(s)
        assert head.startswith(b"HTTP/1.1 200 "), head
        while len(rest) < 2:  # the body: "ok"
            rest += s.recv(65536)
        s.sendall(request)
        answer = rest[2:]
        while chunk := s.recv(65536):
            answer += chunk
    return answer


def test_post_read_by_a_backend_that_closes_its_pooled_connection_is_sent_once(
    procs: Procs, recorders: list[Recorder]
) -> None:
    (backend,) = recorders[:1]
    proxy = proxy_for(procs, [backend])
    answer = warm_then(proxy.port, b"POST /drop HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 502 "), answer
    # it went on the pooled connection (it answered within the last second: http-reuse safe)
    assert backend.connections(b"/drop") == backend.connections(b"/warm")
    # the backend read it and may have acted on it: never a second time, not even there
    assert backend.count(b"/drop") == 1


def test_twin_a_get_in_the_same_situation_is_sent_again(
    procs: Procs, recorders: list[Recorder]
) -> None:
    (backend,) = recorders[:1]
    proxy = proxy_for(procs, [backend])
    answer = warm_then(proxy.port, b"GET /drop HTTP/1.1\r\nHost: x\r\n\r\n")
    # a GET without a body is safe to repeat: once more on a fresh connection (which the
    # backend drops too), then no other backend is left
    assert answer.startswith((b"HTTP/1.1 502 ", b"HTTP/1.1 503 ")), answer
    assert backend.connections(b"/drop")[0] == backend.connections(b"/warm")[0]
    assert backend.count(b"/drop") == 2


# -- the response timeout starts when the request has been sent -----------------------------------
def slow_upload(port: int, path: bytes, size: int, pieces: int, seconds: float) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST %b HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (path, size))
        piece = size // pieces
        for i in range(pieces):
            s.sendall(b"u" * (piece if i < pieces - 1 else size - piece * (pieces - 1)))
            time.sleep(seconds / pieces)  # the client's own pace, part of the scenario
        head, rest = recv_head(s)
        return head + b"\r\n\r\n" + rest


def test_steady_upload_longer_than_the_response_timeout_succeeds(
    procs: Procs, recorders: list[Recorder]
) -> None:
    proxy = proxy_for(procs, recorders)  # response timeout: 1 s; the upload takes 2
    answer = slow_upload(proxy.port, b"/upload", 200_000, 20, 2.0)
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert answer.endswith(b"200000")


def test_twin_a_backend_silent_after_the_upload_still_times_out(
    procs: Procs, recorders: list[Recorder]
) -> None:
    proxy = proxy_for(procs, recorders)
    answer = slow_upload(proxy.port, b"/silent", 20_000, 2, 0.2)
    assert answer.startswith(b"HTTP/1.1 504 "), answer


# -- nothing of a refused request reaches a backend -----------------------------------------------
def test_chunked_request_with_a_bad_chunk_line_never_reaches_a_backend(
    procs: Procs, recorders: list[Recorder]
) -> None:
    proxy = proxy_for(procs, recorders[:1])
    # a pooled upstream connection is ready, so a head would be written at once
    assert raw_exchange(proxy.port, b"GET /warm HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
        b"HTTP/1.1 200 "
    )
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        s.sendall(b"zz\r\nabc\r\n0\r\n\r\n")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert recorders[0].count(b"/chunked") == 0


def test_twin_a_good_chunked_request_in_two_sends_is_forwarded(
    procs: Procs, recorders: list[Recorder]
) -> None:
    proxy = proxy_for(procs, recorders[:1])
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        s.sendall(b"3\r\nabc\r\n0\r\n\r\n")
        head, _ = recv_head(s)
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert recorders[0].count(b"/chunked") == 1


# -- a client that pipelines and never reads costs a bounded amount -------------------------------
def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    assert m is not None
    return int(m.group(1))


def send_until_blocked(sock: socket.socket, data: bytes, quiet: float) -> int:
    """Send ``data`` without reading; stop when the peer has not taken a byte for ``quiet``
    seconds (it stopped reading) or everything went. Returns the bytes sent."""
    sock.setblocking(False)
    sent = 0
    while sent < len(data):
        _, writable, _ = select.select([], [sock], [], quiet)
        if not writable:
            break
        try:
            sent += sock.send(data[sent : sent + 65536])
        except BlockingIOError:
            continue
    return sent


def test_pipelining_client_that_never_reads_is_not_read_further(
    procs: Procs, recorders: list[Recorder]
) -> None:
    proxy = proxy_for(procs, recorders[:1])
    request = b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n"
    data = request * (16 * 1024 * 1024 // len(request))  # 16 MB of requests
    before = rss_kib(proxy.proc.pid)  # type: ignore[attr-defined]
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sent = send_until_blocked(s, data, quiet=1.0)
        answered = recorders[0].count(b"/p")
        grown = rss_kib(proxy.proc.pid) - before  # type: ignore[attr-defined]
    # the proxy stopped reading: the rest stays in the kernel's socket buffers, not in limpet
    print(f"sent {sent} bytes, {answered} answered, the proxy grew by {grown} KiB")
    assert sent < len(data) and answered < sent // len(request), "the proxy read everything"
    # the kernel's socket buffers (autotuned, MBs on loopback) hold the rest; limpet itself
    # holds MAX_PIPELINE parsed requests and one transport buffer (it grew ~5 MB before)
    assert grown < 2 * 1024, f"the proxy grew by {grown} KiB"


def test_twin_a_pipelining_client_that_reads_gets_every_answer(
    procs: Procs, recorders: list[Recorder]
) -> None:
    proxy = proxy_for(procs, recorders[:1])
    n = 2000
    request = b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        reader_out: list[bytes] = []

        def reader() -> None:
            got = b""
            while got.count(b"HTTP/1.1 200 ") < n:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            reader_out.append(got)

        t = threading.Thread(target=reader)
        t.start()
        s.sendall(request * n)
        t.join(timeout=30)
    assert reader_out and reader_out[0].count(b"HTTP/1.1 200 ") == n
