"""Hot reload: SIGHUP and POST /reload re-read --config; open WebSockets carry on; a typo keeps
the running config, names file, line and key, and is counted."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.integration.proxy.conftest import Client, start_proxy
from tests.support.procs import Procs

CONFIG = """\
pools:
  web:
    backends:
{backends}
    affinity: {{mode: cookie}}
"""


def write(path: object, backends: dict[str, str]) -> None:
    lines = "\n".join(f"      - {{id: {n}, url: '{u}'}}" for n, u in backends.items())
    path.write_text(CONFIG.format(backends=lines))  # type: ignore[attr-defined]


def backend_ids(proxy: object) -> set[str]:
    return {b["id"] for b in proxy.status()["pools"][0]["backends"]}  # type: ignore[attr-defined]


def wait_for_ids(proxy: object, want: set[str]) -> None:
    deadline = time.monotonic() + 10
    while backend_ids(proxy) != want:
        assert time.monotonic() < deadline, backend_ids(proxy)
        time.sleep(0.05)


async def test_sighup_adds_a_backend_while_a_websocket_stays_open(
    procs: Procs, three: dict[str, str]
) -> None:
    websockets = pytest.importorskip("websockets")
    config = procs.tmp / "proxy.yaml"
    write(config, {"alpha": three["alpha"]})
    proxy = start_proxy(procs, {}, "--config", str(config))
    async with websockets.connect(proxy.url.replace("http://", "ws://") + "/ws") as ws:
        await ws.send("before")
        assert await ws.recv() == "alpha: before"
        # twin: before the reload, no new session reaches beta
        assert {Client(proxy.url).backend() for _ in range(10)} == {"alpha"}
        write(config, {"alpha": three["alpha"], "beta": three["beta"]})
        os.kill(proxy.proc.pid, signal.SIGHUP)  # type: ignore[attr-defined]
        wait_for_ids(proxy, {"alpha", "beta"})
        assert "beta" in {Client(proxy.url).backend() for _ in range(20)}
        await ws.send("after")
        assert await ws.recv() == "alpha: after"  # the open WebSocket carried on
    assert proxy.proc.poll() is None  # type: ignore[attr-defined]


def test_a_config_typo_keeps_the_running_config(procs: Procs, three: dict[str, str]) -> None:
    config = procs.tmp / "proxy.yaml"
    write(config, {"alpha": three["alpha"], "beta": three["beta"]})
    proxy = start_proxy(procs, {}, "--config", str(config))
    client = Client(proxy.url)
    pinned = client.backend()
    config.write_text(config.read_text().replace("mode: cookie", "mode: cokie"))
    code, body = proxy.admin("POST", "/reload")
    assert code == 400, body
    assert f"{config}:6: pools.web.affinity.mode" in body
    assert backend_ids(proxy) == {"alpha", "beta"}
    assert client.backend() == pinned  # still served, still sticky
    assert 'limpet_config_reloads_total{result="error"} 1.0' in proxy.metrics()
    assert "reload refused" in procs.output(proxy.proc)  # type: ignore[arg-type]
    # fixed: the reload applies (and a removed backend's sessions repin)
    write(config, {"gamma": three["gamma"]})
    code, body = proxy.admin("POST", "/reload")
    assert code == 200, body
    assert backend_ids(proxy) == {"gamma"}
    assert client.backend() == "gamma"
    assert 'limpet_config_reloads_total{result="ok"} 1.0' in proxy.metrics()


def test_reload_needs_the_token(procs: Procs, three: dict[str, str]) -> None:
    config = procs.tmp / "proxy.yaml"
    write(config, {"alpha": three["alpha"]})
    proxy = start_proxy(procs, {}, "--config", str(config))
    assert proxy.admin("POST", "/reload", token=False)[0] == 401


def test_reload_reaches_every_worker(procs: Procs, three: dict[str, str]) -> None:
    config = procs.tmp / "proxy.yaml"
    write(config, {"alpha": three["alpha"]})
    proxy = start_proxy(procs, {}, "--config", str(config), "--workers", "2")
    deadline = time.monotonic() + 15
    while len([w for w in proxy.status().get("workers", []) if "error" not in w]) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    write(config, {"beta": three["beta"]})
    code, body = proxy.admin("POST", "/reload")
    assert code == 200, body
    for worker in proxy.status()["workers"]:
        assert {b["id"] for b in worker["pools"][0]["backends"]} == {"beta"}
