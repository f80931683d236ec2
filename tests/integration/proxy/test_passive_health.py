"""Passive health that a client cannot weaponise: one client making every backend answer 500.

The backends answer 500 to any request carrying ``X-Hostile`` (``whoami --fail-header``), the
way a Cookie with byte 0xE9 once did. Envoy's outlier-detection rules (at most
``max-ejection-percent`` of a pool ejected by passive failures; below ``panic-threshold``
healthy, spread over all) keep normal clients served; the twin without those limits shows every
backend ejected and normal clients answered 503.
"""

from __future__ import annotations

import time

from tests.integration.proxy.conftest import Client, start_proxy
from tests.support.procs import Procs

HOSTILE = {"X-Hostile": "1"}


def backends(procs: Procs) -> dict[str, str]:
    return {
        name: procs.whoami(name, "127.0.0.1", None, "--no-socketio", "--fail-header", "X-Hostile")
        for name in ("alpha", "beta", "gamma")
    }


def proxy_with(procs: Procs, health: str) -> object:
    config = procs.tmp / "proxy.yaml"
    config.write_text(
        "pools:\n  web:\n    health:\n"
        # probes ran once at start (every backend seen up); none again during the test. That
        # one probe must not time out on a busy machine (parallel CI runs): it is not retried
        "      interval: 600\n"
        "      timeout: 20\n"
        "      eject-seconds: 600\n" + health
    )
    proxy = start_proxy(procs, backends(procs), "--config", str(config))
    deadline = time.monotonic() + 30
    while not all(b["seen_up"] for b in proxy.status()["pools"][0]["backends"]):
        assert time.monotonic() < deadline, proxy.status()
        time.sleep(0.05)
    return proxy


def hostile_burst(url: str, count: int) -> list[int]:
    hostile = Client(url, jar=False)  # a new session every time: every backend gets its share
    codes = [hostile.get("/", HOSTILE)[0] for _ in range(count)]
    hostile.close()
    return codes


def test_a_hostile_client_cannot_eject_the_whole_pool(procs: Procs) -> None:
    proxy = proxy_with(procs, "")  # the defaults: max-ejection-percent 10, panic-threshold 50
    pinned = [Client(proxy.url) for _ in range(6)]
    for client in pinned:
        client.backend()
    normal: list[int] = []
    for _ in range(3):
        assert set(hostile_burst(proxy.url, 40)) <= {500, 503}
        for client in pinned + [Client(proxy.url) for _ in range(6)]:
            normal.append(client.get()[0])
    assert normal == [200] * len(normal)
    states = [b["state"] for b in proxy.status()["pools"][0]["backends"]]
    assert states.count("ejected") == 1, states  # the budget: one backend of three


def test_twin_without_limits_the_hostile_client_ejects_every_backend(procs: Procs) -> None:
    proxy = proxy_with(procs, "      max-ejection-percent: 100\n      panic-threshold: 0\n")
    hostile_burst(proxy.url, 40)
    states = {b["state"] for b in proxy.status()["pools"][0]["backends"]}
    assert states == {"ejected"}
    status, body, _ = Client(proxy.url).get()
    assert status == 503, body


def test_panic_spreads_over_passively_ejected_backends(procs: Procs) -> None:
    """No ejection limit but the panic threshold: normal clients are still served."""
    proxy = proxy_with(procs, "      max-ejection-percent: 100\n")
    hostile_burst(proxy.url, 40)
    assert proxy.status()["pools"][0]["panic"] is True
    assert {Client(proxy.url).get()[0] for _ in range(6)} == {200}
