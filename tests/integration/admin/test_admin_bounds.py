"""The admin listener is bounded like the data plane: its own connection limit
(``limits.admin-connections``), a request head within ``timeouts.header`` of the accept or of
the previous response; a dashboard's stream is not cut by it."""

from __future__ import annotations

import socket
import time

from tests.integration.proxy.conftest import Proxy, start_proxy
from tests.support.procs import Procs

STATUS = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def connect(proxy: Proxy) -> socket.socket:
    assert proxy.admin_port is not None
    return socket.create_connection(("127.0.0.1", proxy.admin_port), timeout=10)


def closed_by_proxy(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def answer(sock: socket.socket, request: bytes = STATUS) -> bytes:
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"ok\n"):
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


def proxy_with(procs: Procs, config: str) -> Proxy:
    path = procs.tmp / "proxy.yaml"
    path.write_text(config)
    return start_proxy(procs, {"a": "http://127.0.0.1:9"}, "--config", str(path), "--no-health")


def test_a_trickled_head_and_an_idle_keep_alive_are_closed(procs: Procs) -> None:
    proxy = proxy_with(procs, "timeouts: {header: 0.5}\n")
    slow = connect(proxy)
    slow.sendall(STATUS[:20])  # half a head, then nothing
    assert closed_by_proxy(slow, within=10)  # aiohttp alone kept it for ever
    idle = connect(proxy)
    assert answer(idle).startswith(b"HTTP/1.1 200")
    assert closed_by_proxy(idle, within=10)  # no next head after the response


def test_twin_a_keep_alive_client_that_speaks_is_served(procs: Procs) -> None:
    proxy = proxy_with(procs, "timeouts: {header: 30}\n")
    with connect(proxy) as sock:
        for _ in range(3):
            assert answer(sock).startswith(b"HTTP/1.1 200")
        assert not closed_by_proxy(sock, within=0.2)


def test_the_admin_has_a_connection_limit_of_its_own(procs: Procs) -> None:
    proxy = proxy_with(procs, "timeouts: {header: 30}\nlimits: {admin-connections: 3}\n")
    held = [connect(proxy) for _ in range(3)]
    for sock in held:  # each is served, so each is counted
        assert answer(sock).startswith(b"HTTP/1.1 200")
    extra = connect(proxy)
    extra.settimeout(10)
    assert extra.recv(65536).startswith(b"HTTP/1.1 503")
    extra.close()
    held.pop().close()
    # twin: a freed slot serves the next client, once the admin has seen the close
    deadline = time.monotonic() + 10
    while True:
        with connect(proxy) as sock:
            sock.sendall(STATUS)
            if sock.recv(65536).startswith(b"HTTP/1.1 200"):
                break
        assert time.monotonic() < deadline, "the freed slot was never reused"
        time.sleep(0.05)
    assert proxy.status()["downstream_connections"] == 0  # the data plane never counted them
    for sock in held:
        sock.close()
