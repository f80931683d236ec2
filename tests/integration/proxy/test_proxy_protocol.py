"""PROXY protocol v1/v2 from a real HAProxy (send-proxy / send-proxy-v2) in front of limpet:
the client's address reaches affinity and X-Forwarded-For; untrusted senders are refused; a
tcp listener sends it on to a backend that reads it (HAProxy with accept-proxy)."""

from __future__ import annotations

import pytest

from tests.integration.proxy.conftest import Client, raw_exchange, start_proxy
from tests.support.procs import Procs, free_port, which_or_skip

CLIENT = "127.0.0.2"  # the client's own address; HAProxy talks to limpet from 127.0.0.1


def haproxy(procs: Procs, frontend: str, backend: str) -> int:
    exe = which_or_skip("haproxy", "/usr/sbin/haproxy")
    port = free_port()
    cfg = procs.tmp / f"haproxy-{port}.cfg"
    cfg.write_text(
        "global\n  maxconn 256\n"
        "defaults\n  timeout connect 3s\n  timeout client 30s\n  timeout server 30s\n"
        f"frontend fe\n  bind 127.0.0.1:{port}{frontend}\n  default_backend be\n"
        f"backend be\n{backend}\n"
    )
    procs.start([exe, "-f", str(cfg), "-db"], wait_for=("127.0.0.1", port))
    return port


def forwarded_for(port: int) -> str:
    client = Client(f"http://127.0.0.1:{port}", source=CLIENT)
    status, body, _ = client.get()
    assert status == 200, body
    lines = dict(line.split(": ", 1) for line in body.splitlines()[1:] if ": " in line)
    return lines["X-Forwarded-For"]


@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_the_client_address_comes_through_haproxy(
    procs: Procs, three: dict[str, str], send: str
) -> None:
    proxy = start_proxy(procs, three, "--proxy-protocol")
    front = haproxy(
        procs, "\n  mode tcp", f"  mode tcp\n  server limpet 127.0.0.1:{proxy.port} {send}"
    )
    assert forwarded_for(front) == CLIENT


def test_twin_without_the_protocol_limpet_sees_haproxy(procs: Procs, three: dict[str, str]) -> None:
    proxy = start_proxy(procs, three)
    front = haproxy(procs, "\n  mode tcp", f"  mode tcp\n  server limpet 127.0.0.1:{proxy.port}")
    assert forwarded_for(front) == "127.0.0.1"


def test_client_ip_affinity_uses_the_address_from_the_header(
    procs: Procs, three: dict[str, str]
) -> None:
    proxy = start_proxy(procs, three, "--proxy-protocol", "--affinity", "client-ip")
    front = haproxy(
        procs, "\n  mode tcp", f"  mode tcp\n  server limpet 127.0.0.1:{proxy.port} send-proxy-v2"
    )
    seen = {}
    for i in range(2, 30):
        source = f"127.0.0.{i}"
        picks = {
            Client(f"http://127.0.0.1:{front}", source=source, jar=False).backend()
            for _ in range(3)
        }
        assert len(picks) == 1, (source, picks)  # each client address sticks
        seen[source] = picks.pop()
    assert len(set(seen.values())) > 1  # and different addresses spread: not all one (HAProxy's)


def test_a_header_from_an_untrusted_address_is_refused(procs: Procs, three: dict[str, str]) -> None:
    proxy = start_proxy(procs, three, "--proxy-protocol", "--proxy-protocol-from", "10.0.0.0/8")
    spoof = b"PROXY TCP4 203.0.113.9 127.0.0.1 1234 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert raw_exchange(proxy.port, spoof) == b"<EOF>"  # closed, nothing answered
    # a direct client without a header is served with its own address
    assert forwarded_for(proxy.port) == CLIENT


def test_a_trusted_balancer_must_send_the_header(procs: Procs, three: dict[str, str]) -> None:
    proxy = start_proxy(procs, three, "--proxy-protocol")
    assert raw_exchange(proxy.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == b"<EOF>"


def test_tcp_mode_sends_the_address_on_to_backends(procs: Procs, three: dict[str, str]) -> None:
    # backend: HAProxy reading the header (accept-proxy) in front of a whoami, adding XFF
    reader = haproxy(
        procs,
        " accept-proxy\n  mode http\n  option forwardfor",
        f"  mode http\n  server w {three['alpha'].removeprefix('http://')}",
    )
    proxy = start_proxy(
        procs, {"r": f"http://127.0.0.1:{reader}"}, "--mode", "tcp", "--send-proxy-protocol", "v2",
        admin=False,
    )  # fmt: skip
    assert forwarded_for(proxy.port) == CLIENT
