"""Health and repin: a killed backend, a drained backend, and no backend at all."""

from __future__ import annotations

import json
import signal
import time

from tests.integration.proxy.conftest import Client, start_proxy
from tests.support.procs import Procs, free_port


def whoami_proc(procs: Procs, name: str) -> tuple[str, object]:
    port = free_port()
    proc = procs.limpet(
        "whoami",
        "--listen",
        f"127.0.0.1:{port}",
        "--name",
        name,
        "--no-socketio",
        wait_for=("127.0.0.1", port),
    )
    return f"http://127.0.0.1:{port}", proc


def test_killed_backend_session_is_repinned_without_a_failed_request(procs: Procs) -> None:
    started = {name: whoami_proc(procs, name) for name in ("alpha", "beta", "gamma")}
    proxy = start_proxy(procs, {n: u for n, (u, _) in started.items()}, "--health-interval", "0.5")
    clients = [Client(proxy.url) for _ in range(12)]
    pins = {id(c): c.backend() for c in clients}
    victim = pins[id(clients[0])]
    procs.kill(started[victim][1], signal.SIGKILL)  # type: ignore[arg-type]
    moved = 0
    for client in clients:
        before = dict(client.cookies)
        status, body, resp = client.get()
        assert status == 200, body  # no failed request, not even the first after the kill
        now = body.splitlines()[0]
        if pins[id(client)] == victim:
            assert now != victim
            assert resp.headers.get("Set-Cookie"), "the repinned response carries a new cookie"
            assert client.cookies != before
            moved += 1
        else:
            assert now == pins[id(client)], "sessions on live backends stay where they are"
        # and the session stays on its new pin
        assert {client.backend() for _ in range(5)} == {now}
    assert moved >= 1
    state = {b["id"]: b["state"] for b in proxy.status()["pools"][0]["backends"]}
    assert state[victim] == "ejected"


def test_twin_without_repin_the_killed_pin_would_fail(procs: Procs) -> None:
    """Straight to the killed backend (what a proxy without repin does): the request fails."""
    import urllib.error
    import urllib.request

    url, proc = whoami_proc(procs, "alpha")
    procs.kill(proc, signal.SIGKILL)  # type: ignore[arg-type]
    try:
        urllib.request.urlopen(url, timeout=2)
        raise AssertionError("a killed backend answered")
    except (urllib.error.URLError, ConnectionError):
        pass


def test_drained_backend_keeps_its_sessions_but_takes_no_new_ones(
    procs: Procs, three: dict[str, str]
) -> None:
    proxy = start_proxy(procs, three)
    client = Client(proxy.url)
    pinned = client.backend()
    code, body = proxy.admin("POST", f"/backends/{pinned}/drain")
    assert code == 200 and json.loads(body)["state"] == "draining"
    assert {client.backend() for _ in range(10)} == {pinned}, "pinned session left a drain"
    fresh = {Client(proxy.url).backend() for _ in range(20)}
    assert pinned not in fresh and len(fresh) == 2
    code, body = proxy.admin("POST", f"/backends/{pinned}/undrain")
    assert code == 200 and json.loads(body)["state"] == "healthy"
    fresh = {Client(proxy.url).backend() for _ in range(30)}
    assert pinned in fresh
    assert proxy.admin("POST", "/backends/nope/drain")[0] == 404


def test_all_backends_down_is_a_clear_503(procs: Procs) -> None:
    dead = {"alpha": f"http://127.0.0.1:{free_port()}", "beta": f"http://127.0.0.1:{free_port()}"}
    proxy = start_proxy(procs, dead, "--health-interval", "0.3")
    started = time.monotonic()
    status, body, _ = Client(proxy.url).get()
    assert status in (502, 503), body
    assert "limpet" in body and "backend" in body
    # once the probes have ejected both, the answer is a 503 at once
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = {b["state"] for b in proxy.status()["pools"][0]["backends"]}
        if states == {"ejected"}:
            break
        time.sleep(0.1)
    status, body, _ = Client(proxy.url).get()
    assert status == 503 and "no healthy backend" in body
    assert time.monotonic() - started < 30
    code, _ = proxy.admin("GET", "/readyz")
    assert code == 503


def test_admin_endpoints(procs: Procs, three: dict[str, str]) -> None:
    proxy = start_proxy(procs, three)
    client = Client(proxy.url)
    pinned = client.backend()
    for _ in range(3):
        client.backend()
    status = proxy.status()
    backends = {b["id"]: b for b in status["pools"][0]["backends"]}
    assert set(backends) == set(three)
    assert backends[pinned]["sessions_pinned"] >= 1
    assert all(b["state"] == "healthy" for b in backends.values())
    metrics = proxy.metrics()
    assert f'limpet_responses_total{{backend="{pinned}",code="2xx",pool="default"}} 4.0' in metrics
    # one placement, then three requests that carry its cookie (plain ints read at scrape time)
    assert f'limpet_pins_total{{backend="{pinned}",pool="default"}} 1.0' in metrics
    assert proxy.admin("GET", "/healthz")[0] == 200
    assert proxy.admin("GET", "/readyz")[0] == 200
