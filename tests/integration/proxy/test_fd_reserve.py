"""A reserve of file descriptors clients cannot take: with the open-files limit at 256 and more
client connections than that, the proxy lowers max-connections to fit, answers the rest 503 and
closes them, and health probes and the admin keep working."""

from __future__ import annotations

import socket
import sys
import time
import urllib.request

import pytest

from tests.integration.proxy.conftest import Proxy
from tests.support.procs import Procs, free_port, limpet_env, wait_listening

NOFILE = 256
FLOOD = 300  # more connections than the process may open


def probes_ok(proxy: Proxy) -> float:
    for line in proxy.metrics().splitlines():
        if line.startswith("limpet_health_probes_total{") and 'result="ok"' in line:
            return float(line.split()[-1])
    return 0.0


def test_clients_cannot_take_the_descriptors_of_probes_and_admin(procs: Procs) -> None:
    backend = procs.whoami("a")
    port, admin = free_port(), free_port()
    argv = [sys.executable, "-m", "limpet", "proxy", "--listen", f"127.0.0.1:{port}",
            "--admin", f"127.0.0.1:{admin}", "--backend", f"a={backend}",
            "--health-interval", "0.2", "--log-level", "warning"]  # fmt: skip
    proc = procs.start(
        ["bash", "-c", f'ulimit -n {NOFILE} && exec "$@"', "limit", *argv],
        env=limpet_env({"LIMPET_SECRET": "s"}),
        wait_for=("127.0.0.1", port),
    )
    wait_listening("127.0.0.1", admin, proc=proc)
    proxy = Proxy("127.0.0.1", port, admin, proc)
    status = proxy.status()
    assert status["open_files_limit"] == NOFILE
    held = status["max_connections"]
    assert 2 * held < NOFILE  # lowered from 10 000 to fit, with room to spare
    assert "max-connections lowered" in procs.output(proc)
    clients = []
    try:
        for _ in range(FLOOD):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        refused = 0
        for sock in clients[held:]:  # every connection over the limit is answered and closed
            sock.settimeout(10)
            if sock.recv(65536).startswith(b"HTTP/1.1 503"):
                refused += 1
        assert refused >= FLOOD - held - 1, refused
        # the reserve: the admin answers and the health probes go on succeeding
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/healthz", timeout=10) as r:
            assert r.status == 200
        before = probes_ok(proxy)
        deadline = time.monotonic() + 15
        while probes_ok(proxy) < before + 2:
            assert time.monotonic() < deadline, "no successful probe while clients held the rest"
            time.sleep(0.1)
        assert proxy.status()["pools"][0]["backends"][0]["state"] == "healthy"
    finally:
        for sock in clients:
            sock.close()
    assert proc.poll() is None
    assert "Too many open files" not in procs.output(proc)


@pytest.fixture(autouse=True)
def one_build(wire_core: str) -> None:
    if wire_core == "python":
        pytest.skip(
            "descriptors are counted the same way by both builds: the compiled run covers it"
        )
