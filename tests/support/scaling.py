"""A scale-up rig for rebalance tests: `limpet hub` replicas on one broker, one or two
`limpet proxy --affinity engineio` in front (two behind a round-robin `--mode tcp` front), the
proxies' config rewritten and SIGHUP'd to add replicas, as discovery would.

Everything waits on the processes' own answers (hub ``/healthz`` client counts, the proxies'
``/status``), never on sleeps.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from typing import Any

from tests.support.admin import admin_get
from tests.support.procs import Procs, free_port, wait_listening

SECRET = "rebalance-test-secret"
TOKEN = "rebalance-admin-token"


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


class Rig:
    """``hubs`` hub replicas, ``replicas`` of them in the proxies' config at first."""

    def __init__(
        self,
        procs: Procs,
        broker: str,
        *,
        rebalance: bool,
        replicas: int = 2,
        hubs: int = 4,
        max_moving: float = 0.25,
        proxies: int = 1,
        hub_args: tuple[str, ...] = (),
    ) -> None:
        self.procs = procs
        self.max_moving = max_moving
        self.rebalance = rebalance
        self.hub_ports = [free_port() for _ in range(hubs)]
        self.hubs = [
            procs.limpet(
                "hub", f"--listen=127.0.0.1:{port}", f"--broker={broker}", f"--name=h{i}", *hub_args
            )
            for i, port in enumerate(self.hub_ports)
        ]
        for port, proc in zip(self.hub_ports, self.hubs, strict=True):
            wait_listening("127.0.0.1", port, proc=proc, timeout=30)
        self.token_file = procs.tmp / "token"
        self.token_file.write_text(TOKEN + "\n")
        self.proxy_ports = [free_port() for _ in range(proxies)]
        self.admin_ports = [free_port() for _ in range(proxies)]
        self.configs = [procs.tmp / f"proxy-{i}.yaml" for i in range(proxies)]
        self.write_config(replicas)
        self.proxies = [
            procs.limpet("proxy", "--config", str(cfg), wait_for=("127.0.0.1", port), timeout=30)
            for cfg, port in zip(self.configs, self.proxy_ports, strict=True)
        ]
        for port, proc in zip(self.admin_ports, self.proxies, strict=True):
            wait_listening("127.0.0.1", port, proc=proc, timeout=30)
        self.port = self.proxy_ports[0]
        if proxies > 1:  # an L4 front that deals connections round robin to the proxies
            self.port = free_port()
            procs.limpet(
                "proxy", "--mode", "tcp", "--affinity", "none", "--listen",
                f"127.0.0.1:{self.port}",
                *[f"--backend=p{i}=127.0.0.1:{p}" for i, p in enumerate(self.proxy_ports)],
                wait_for=("127.0.0.1", self.port),
            )  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_port(self) -> int:
        return self.admin_ports[0]

    def write_config(self, replicas: int) -> None:
        backends = "\n".join(
            f"      - {{id: h{i}, url: 'http://127.0.0.1:{self.hub_ports[i]}'}}"
            for i in range(replicas)
        )
        rebalance = (
            f"{{enabled: {str(self.rebalance).lower()}, hold: 1, rate: 20,"
            f" max-moving: {self.max_moving}, settle: 2}}"
        )
        for cfg, port, admin in zip(self.configs, self.proxy_ports, self.admin_ports, strict=True):
            cfg.write_text(
                f"listeners: ['127.0.0.1:{port}']\n"
                f"admin: 127.0.0.1:{admin}\n"
                f"admin-token-file: {self.token_file}\n"
                f"secret: {SECRET}\n"
                "pools:\n"
                "  hubs:\n"
                "    affinity: {mode: engineio}\n"
                "    health: {interval: 0.5}\n"
                f"    rebalance: {rebalance}\n"
                f"    backends:\n{backends}\n"
            )

    def scale_to(self, replicas: int) -> None:
        self.write_config(replicas)
        for proxy in self.proxies:
            os.kill(proxy.pid, signal.SIGHUP)

    def status(self, proxy: int = 0) -> dict[str, Any]:
        pool: dict[str, Any] = admin_get(self.admin_ports[proxy], "/status")["pools"][0]
        return pool

    def scaled(self, replicas: int) -> bool:
        """Every proxy has ``replicas`` backends, each seen up."""
        for i in range(len(self.proxies)):
            backends = self.status(i)["backends"]
            if len(backends) != replicas or not all(b["seen_up"] for b in backends):
                return False
        return True

    def clients_per_hub(self) -> list[int]:
        return [_get(f"http://127.0.0.1:{p}/healthz")["clients"] for p in self.hub_ports]

    def publish(self, channel: str, n: int) -> tuple[str, int]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.hub_ports[0]}/api/channels/{channel}/messages",
            data=json.dumps({"data": {"key": f"pub:{n}"}}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            ack = json.loads(r.read())
        return ack["epoch"], ack["offset"]


async def eventually(predicate: Any, timeout: float, what: Any) -> Any:
    """Poll ``predicate`` (in a thread: it may block on HTTP) until it is truthy; bounded."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        await asyncio.sleep(0.2)
