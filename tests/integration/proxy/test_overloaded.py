"""A replica too busy to answer its probes still serves when it is all that is left.

When one of two replicas dies, its clients reconnect to the survivor at once and the survivor's
health checks time out under the storm. A probe that connected and was not answered marks the
backend *overloaded*: ejected like any failing backend, but a pool in panic offers it again
rather than answering 503 with a live replica behind it. The twin: a survivor whose health
check answers 500 says it is unwell, and stays out.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.integration.proxy.conftest import Proxy, start_proxy
from tests.support.procs import Procs, free_port


@pytest.fixture(autouse=True)
def one_build(wire_core: str) -> None:
    if wire_core == "python":
        pytest.skip("health is decided the same way in both builds: the compiled run covers it")


def survivor_and_dead(procs: Procs, health: str) -> dict[str, str]:
    """A live backend whose ``/healthz`` stalls or fails, and a port nothing listens on."""
    port = free_port()
    procs.start(
        [sys.executable, "-m", "tests.support.extrasapp", "--port", str(port), health, "/healthz"],
        wait_for=("127.0.0.1", port),
    )
    return {"survivor": f"http://127.0.0.1:{port}", "dead": f"http://127.0.0.1:{free_port()}"}


def ejected_both(proxy: Proxy) -> dict[str, dict]:
    """Wait until the probes have ejected both backends (the status endpoint says so)."""
    deadline = time.monotonic() + 20
    while True:
        backends = {b["id"]: b for b in proxy.status()["pools"][0]["backends"]}
        if all(b["state"] == "ejected" for b in backends.values()):
            return backends
        assert time.monotonic() < deadline, backends
        time.sleep(0.1)


def get(proxy: Proxy) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"{proxy.url}/work", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize("health", ["--stall", "--fail"], ids=["stalled", "twin-failing"])
def test_a_survivor_whose_probes_time_out_keeps_serving(procs: Procs, health: str) -> None:
    backends = survivor_and_dead(procs, health)
    proxy = start_proxy(procs, backends, "--health-path", "/healthz", "--health-interval", "0.2")
    seen = ejected_both(proxy)
    assert proxy.status()["pools"][0]["panic"]
    assert not seen["dead"]["overloaded"]  # refused: known down, never offered
    status, body = get(proxy)
    if health == "--stall":
        assert seen["survivor"]["overloaded"]
        assert status == 200 and body.startswith(b"GET /work HTTP/1.1"), body
    else:  # the twin: a backend that answers its check with 500 is out, a clear 503
        assert not seen["survivor"]["overloaded"]
        assert status == 503, body
