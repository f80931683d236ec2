"""A rolling restart for client-library tests: three `limpet hub` replicas on one redis-server
behind `limpet proxy --affinity engineio`, each of which can be killed and started again on its
own port, and the proxy too.

The plan is a list of steps taken at publish counts: the publisher stops at each count (a gate)
until the step's disruptive half is done (a replica killed), goes on while the replica is down,
and the restart completes before the next gate opens, so every step hits a running cluster.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tests.support.procs import Procs, free_port, wait_listening

SECRET = "rolling-test-secret"


@dataclass(frozen=True)
class Step:
    """At publish count ``at``: kill replica ``replica`` with ``sig`` (or the proxy, replica -1)."""

    at: int
    replica: int
    sig: int = signal.SIGKILL

    @property
    def what(self) -> str:
        target = "proxy" if self.replica < 0 else f"h{self.replica}"
        return f"{signal.Signals(self.sig).name} {target} at {self.at}"


def plan(total: int) -> list[Step]:
    """Every replica in turn (one of them shut down gracefully, which closes sessions from the
    server side), then the proxy once."""
    return [
        Step(total * 15 // 100, 0),
        Step(total * 35 // 100, 1, signal.SIGTERM),
        Step(total * 55 // 100, 2),
        Step(total * 75 // 100, -1),
    ]


class Cluster:
    """Hub replicas and a proxy that keep their ports across restarts."""

    def __init__(self, procs: Procs, broker: str, replicas: int = 3) -> None:
        self.procs = procs
        self.hub_ports = [free_port() for _ in range(replicas)]
        self.hub_argv = [
            [
                sys.executable,
                "-m",
                "limpet",
                "hub",
                "--listen",
                f"127.0.0.1:{port}",
                "--broker",
                broker,
                "--name",
                f"h{i}",
            ]
            for i, port in enumerate(self.hub_ports)
        ]
        self.proxy_port = free_port()
        self.proxy_argv = [
            sys.executable, "-m", "limpet", "proxy", "--listen", f"127.0.0.1:{self.proxy_port}",
            "--affinity", "engineio", "--secret", SECRET,
            *[f"--backend=h{i}=http://127.0.0.1:{p}" for i, p in enumerate(self.hub_ports)],
        ]  # fmt: skip
        self.hubs: list[subprocess.Popen[bytes]] = [procs.start(a) for a in self.hub_argv]
        for port, proc in zip(self.hub_ports, self.hubs, strict=True):
            self._wait(port, proc)
        self.proxy = procs.start(self.proxy_argv)
        self._wait(self.proxy_port, self.proxy)
        self.done: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def hub_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.hub_ports[i]}"

    def _wait(self, port: int, proc: subprocess.Popen[bytes]) -> None:
        try:
            wait_listening("127.0.0.1", port, proc=proc, timeout=20)
        except Exception as exc:
            raise RuntimeError(f"did not start: {exc}\n{self.procs.output(proc)}") from exc

    def kill(self, step: Step) -> None:
        self.procs.kill(self.proxy if step.replica < 0 else self.hubs[step.replica], step.sig)

    def restart(self, step: Step) -> None:
        if step.replica < 0:
            self.proxy = self.procs.start(self.proxy_argv)
            self._wait(self.proxy_port, self.proxy)
        else:
            self.hubs[step.replica] = self.procs.start(self.hub_argv[step.replica])
            self._wait(self.hub_ports[step.replica], self.hubs[step.replica])
        self.done.append(step.what)

    async def run(
        self,
        steps: list[Step],
        at_gate: Callable[[int], Awaitable[None]],
        release: Callable[[], None],
    ) -> None:
        """Take ``steps`` in order: ``at_gate(n)`` returns once the publisher waits at count n,
        ``release()`` lets it go on (right after the kill, before the restart)."""
        for step in steps:
            await at_gate(step.at)
            await asyncio.to_thread(self.kill, step)
            release()
            await asyncio.to_thread(self.restart, step)
