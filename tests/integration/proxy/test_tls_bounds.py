"""TLS handshakes are bounded like every other connection: a stalled ClientHello is closed after
``timeouts.handshake``, and handshaking connections count against ``max-connections``."""

from __future__ import annotations

import socket
import ssl
import time

from tests.integration.proxy.conftest import Proxy, start_proxy
from tests.integration.proxy.test_tls import tls_args
from tests.support.certs import TestCA
from tests.support.procs import Procs


def stalled(proxy: Proxy) -> socket.socket:
    """A TCP connection to the TLS listener that never sends its ClientHello."""
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=10)


def closed_by_proxy(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def tls_get(proxy: Proxy, ca: TestCA) -> str:
    ctx = ssl.create_default_context(cafile=str(ca.path))
    with (
        socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="a.test") as s,
    ):
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode(errors="replace")


def wait_connections(proxy: Proxy, n: int) -> None:
    deadline = time.monotonic() + 10
    while proxy.status()["downstream_connections"] != n:  # the status endpoint counts them
        assert time.monotonic() < deadline, proxy.status()["downstream_connections"]
        time.sleep(0.05)


def tls_proxy(procs: Procs, backends: dict[str, str], config: str) -> tuple[TestCA, Proxy]:
    """A proxy with a TLS listener (a certificate for a.test) and ``config``."""
    ca = TestCA(procs.tmp / "pki")
    path = procs.tmp / "proxy.yaml"
    path.write_text(config)
    proxy = start_proxy(procs, backends, "--config", str(path), *tls_args(ca.leaf("a.test")))
    wait_connections(proxy, 0)  # the start-up probe's connection is gone
    return ca, proxy


def test_a_stalled_handshake_is_closed_after_the_handshake_timeout(
    procs: Procs, three: dict[str, str]
) -> None:
    ca, proxy = tls_proxy(procs, three, "timeouts: {handshake: 0.5}\n")
    sock = stalled(proxy)
    wait_connections(proxy, 1)  # counted while it handshakes
    # closed long before asyncio's default of 60 s (the socket waits at most 10)
    assert closed_by_proxy(sock, within=10)
    wait_connections(proxy, 0)
    sock.close()
    assert "200 OK" in tls_get(proxy, ca)  # twin: a client that speaks is served


def test_handshaking_connections_count_against_max_connections(
    procs: Procs, three: dict[str, str]
) -> None:
    ca, proxy = tls_proxy(procs, three, "timeouts: {handshake: 60}\nlimits: {max-connections: 2}\n")
    first, second = stalled(proxy), stalled(proxy)
    wait_connections(proxy, 2)
    third = stalled(proxy)
    assert closed_by_proxy(third, within=10)  # over the limit: closed at once
    third.close()
    assert not closed_by_proxy(first, within=0.2)  # the two within it stay (twin)
    first.close()
    wait_connections(proxy, 1)
    assert "200 OK" in tls_get(proxy, ca)  # a freed slot serves a real client
    second.close()
