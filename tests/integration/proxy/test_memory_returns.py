"""The memory of a burst of aborted TLS handshakes goes back to the system (malloc_trim on a
timer; bench/proxy/tls_memory.py measures the full 8 x 2 000 rounds). Twin: with the trim off,
the proxy's RSS stays at its peak."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from tests.support.certs import TestCA
from tests.support.handshakes import burst, rss_kib
from tests.support.procs import Procs, free_port

BURST, AT_ONCE, MAX_BURSTS = 1000, 500, 6
GROWN_KIB = 8 * 1024


def proxy_after_burst(procs: Procs, trim: str) -> tuple[int, int, int]:
    """(pid, RSS before, RSS right after a burst of aborted handshakes)."""
    leaf = TestCA(procs.tmp / f"pki-{trim}").leaf("a.test")
    port = free_port()
    proc = procs.limpet(
        "proxy", "--listen", f"127.0.0.1:{port}", "--backend", "127.0.0.1:9", "--no-health",
        "--tls-cert", str(leaf.cert), "--tls-key", str(leaf.key), "--log-level", "warning",
        wait_for=("127.0.0.1", port), env={"LIMPET_SECRET": "s", "LIMPET_MALLOC_TRIM": trim},
    )  # fmt: skip
    before = rss_kib(proc.pid)
    for _ in range(MAX_BURSTS):  # until the heap has clearly grown (how much varies with load)
        asyncio.run(burst(port, BURST, AT_ONCE))
        if rss_kib(proc.pid) - before > GROWN_KIB:
            break
    return proc.pid, before, rss_kib(proc.pid)


@pytest.fixture(autouse=True)
def one_build(wire_core: str) -> None:
    if wire_core == "python" or not sys.platform.startswith("linux"):
        pytest.skip("the allocator is under test, not the wire core (and /proc is Linux's)")


def test_the_memory_of_a_burst_comes_back(procs: Procs) -> None:
    pid, before, _ = proxy_after_burst(procs, "0.5")
    deadline = time.monotonic() + 20
    while rss_kib(pid) > before + GROWN_KIB // 2:  # a trim every 0.5 s gives it back
        assert time.monotonic() < deadline, (before, rss_kib(pid))
        time.sleep(0.1)


def test_twin_without_the_trim_the_peak_stays(procs: Procs) -> None:
    pid, before, peak = proxy_after_burst(procs, "0")
    assert peak - before > GROWN_KIB, (before, peak)  # the same bursts grow the heap...
    time.sleep(2.0)  # ...four trims' worth of the test above: nothing gives it back
    assert rss_kib(pid) > before + GROWN_KIB // 2, (before, peak, rss_kib(pid))
