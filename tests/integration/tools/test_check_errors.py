"""`limpet check` on bad input: a clear one-line error and a non-zero exit, never a hang."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from tests.support.procs import free_port, limpet_env


def check(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "limpet", "check", *args],
        env=limpet_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


class TcpServer:
    """A loopback TCP server that answers every connection with ``reply`` (or never answers)."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.reply is None:
                self.held.append(conn)  # silent: keep it open, say nothing
                continue
            try:
                conn.recv(4096)
                conn.sendall(self.reply)
            finally:
                conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def garbage_server() -> Iterator[TcpServer]:
    server = TcpServer(b"-ERR unknown command\r\n")
    yield server
    server.close()


@pytest.fixture
def silent_server() -> Iterator[TcpServer]:
    server = TcpServer(None)
    yield server
    server.close()


def test_unreachable_url() -> None:
    result = check(f"http://127.0.0.1:{free_port()}/")
    assert result.returncode == 1
    assert "cannot reach" in result.stderr and "connection refused" in result.stderr


def test_not_http(garbage_server: TcpServer) -> None:
    result = check(f"http://127.0.0.1:{garbage_server.port}/")
    assert result.returncode == 1
    assert "did not answer HTTP" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_silent_server_times_out(silent_server: TcpServer) -> None:
    result = check(f"http://127.0.0.1:{silent_server.port}/", "--timeout", "1")
    assert result.returncode == 1
    assert "no answer from" in result.stderr and "within 1 s" in result.stderr


@pytest.mark.parametrize(
    ("url", "message"),
    [("127.0.0.1:8080", "no scheme"), ("gopher://127.0.0.1/", "scheme must be")],
)
def test_bad_url(url: str, message: str) -> None:
    result = check(url)
    assert result.returncode == 2
    assert message in result.stderr
