"""The failover scenario of the reconnect-storm test and benchmark (tests/e2e/hub/
test_failover_storm.py, bench/hub/failover.py): subscribers in node processes
(tests/e2e/js/hub_failover.mjs) behind `limpet proxy --affinity engineio` in front of two hub
replicas (tests.support.scaling.Rig), numbered messages published throughout, then the replica
that holds the larger half of the clients is SIGKILLed.

Everything waits on the processes' own answers (the node peers' reports, the hubs' /healthz),
bounded in time; the one pause is the publisher's pace.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.scaling import Rig

#: the most clients one node process is given (a websocket and a ledger each)
PER_PROCESS = 2000
#: seconds between two publishes (10 messages a second throughout)
PACE = 0.1


class Subscribers:
    """``count`` subscribers of ``kind`` ("limpet" or "plain") split over node processes."""

    def __init__(self, node: str, js: Path, url: str, channel: str, count: int, kind: str) -> None:
        self.args = (node, js, url, channel, count, kind)
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, timeout: float) -> None:
        node, js, url, channel, count, kind = self.args
        n = max(1, -(-count // PER_PROCESS))
        share = [count // n + (i < count % n) for i in range(n)]
        for size in share:
            cfg = {"url": url, "channel": channel, "count": size, "kind": kind, "concurrency": 100}
            self.procs.append(
                await asyncio.create_subprocess_exec(
                    node,
                    str(js / "hub_failover.mjs"),
                    json.dumps(cfg),
                    cwd=js,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
            )
        for proc, size in zip(self.procs, share, strict=True):
            ready = await asyncio.wait_for(self._line(proc), timeout)
            assert ready == {"event": "ready", "clients": size}, ready

    @staticmethod
    async def _line(proc: asyncio.subprocess.Process) -> dict[str, Any]:
        assert proc.stdout is not None
        text = await proc.stdout.readline()
        assert text, "the node subscribers exited"
        line: dict[str, Any] = json.loads(text)
        return line

    async def report(self, total: int) -> dict[str, Any]:
        """The peers' reports summed (recovery times: the largest of each)."""
        summed: dict[str, Any] = {}
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write((json.dumps({"op": "report", "total": total}) + "\n").encode())
            await proc.stdin.drain()
            part = await asyncio.wait_for(self._line(proc), 30)
            for key, value in part.items():
                if key == "recovery_ms":
                    have = summed.setdefault(key, {})
                    for k, v in value.items():
                        have[k] = max(have.get(k, 0), v)
                elif isinstance(value, list):
                    summed.setdefault(key, []).extend(value)
                elif isinstance(value, int):
                    summed[key] = summed.get(key, 0) + value
        return summed

    async def close(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


@dataclass
class Publisher:
    """Publishes ``{"n": 0, 1, 2, ...}`` to a channel through one replica's HTTP API."""

    url: str
    channel: str
    pace: float = PACE
    published: int = 0
    failed: list[str] = field(default_factory=list)

    async def publish(self, http: aiohttp.ClientSession) -> None:
        body = {"data": {"n": self.published}}
        async with http.post(f"{self.url}/api/channels/{self.channel}/messages", json=body) as r:
            if r.status >= 300:
                self.failed.append(f"{r.status} {await r.text()}")
                return
        self.published += 1

    async def run(self, http: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.publish(http)
            try:
                await asyncio.wait_for(stop.wait(), self.pace)
            except TimeoutError:
                pass


@dataclass
class Outcome:
    clients: int
    victim_clients: int
    recovered_in_time: bool
    #: seconds from the SIGKILL until the peers reported every client back (None: not in time)
    recovery_s: float | None
    report: dict[str, Any]
    survivor_health: dict[str, Any]
    published: int


async def failover(
    rig: Rig,
    subscribers: Subscribers,
    clients: int,
    deadline: float,
    http: aiohttp.ClientSession,
    probe: Callable[[str, int], None] = lambda moment, survivor_pid: None,
    pace: float = PACE,
) -> Outcome:
    """Kill the replica with more clients while publishing; wait up to ``deadline`` seconds for
    every client to be subscribed again, then for every ledger to hold every message.
    ``probe(moment, survivor pid)`` is called at the kill ("killed") and once all are back
    ("back") or the deadline passed ("deadline"); ``pace``: seconds between two publishes."""
    counts = await asyncio.to_thread(rig.clients_per_hub)
    assert sum(counts) == clients and min(counts) > 0, counts
    victim = max(range(len(counts)), key=lambda i: counts[i])
    survivor = 1 - victim
    channel = subscribers.args[3]
    publisher = Publisher(f"http://127.0.0.1:{rig.hub_ports[survivor]}", str(channel), pace)
    for _ in range(5):
        await publisher.publish(http)
    await eventually_async(
        lambda: subscribers.report(publisher.published),
        lambda r: r["complete"] == clients,
        30,
    )
    stop = asyncio.Event()
    pacing = asyncio.create_task(publisher.run(http, stop))
    try:
        probe("killed", rig.hubs[survivor].pid)
        killed = time.monotonic()
        os.kill(rig.hubs[victim].pid, signal.SIGKILL)
        recovery_s: float | None = None
        try:
            await eventually_async(
                lambda: subscribers.report(0),
                lambda r: (
                    r["went_down"] >= counts[victim]
                    and r["still_down"] == 0
                    and r["subscribed"] == clients
                ),
                deadline,
            )
            recovery_s = time.monotonic() - killed
            probe("back", rig.hubs[survivor].pid)
        except AssertionError:
            probe("deadline", rig.hubs[survivor].pid)
        if recovery_s is not None:  # a few more messages with everyone back
            mark = publisher.published
            for _ in range(100):  # bounded: 5 more paces
                if publisher.published >= mark + 5:
                    break
                await asyncio.sleep(pace)
    finally:
        stop.set()
        await pacing
    total = publisher.published
    report = await subscribers.report(total)
    if recovery_s is not None:
        report = await eventually_async(
            lambda: subscribers.report(total), lambda r: r["complete"] == clients, 30
        )
    async with http.get(f"http://127.0.0.1:{rig.hub_ports[survivor]}/healthz") as r:
        health = await r.json()
    assert not publisher.failed, publisher.failed[:3]
    return Outcome(
        clients, counts[victim], recovery_s is not None, recovery_s, report, health, total
    )


async def eventually_async(fetch: Any, ok: Any, timeout: float) -> dict[str, Any]:
    """Ask ``fetch()`` until ``ok(answer)``; bounded. Raises AssertionError with the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer: dict[str, Any] = await fetch()
        if ok(answer):
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {answer}")
        await asyncio.sleep(0.2)


def new_channel() -> str:
    return f"failover-{uuid.uuid4().hex[:8]}"
