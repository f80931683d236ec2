"""The scale-up with the official socket.io JS client: 80 Node clients (websocket, each
resubscribing from its last offset after a reconnect: tests/e2e/js/scale_clients.js) through
`limpet proxy --affinity engineio` with rebalance on, two hub replicas on Redis scaled to four
by SIGHUP, 20 messages/s published throughout.

Every replica ends within 25 % ± 5 % of the clients; every moved client saw close code 1012 and
reconnected; over all clients no message is duplicated, none is missing between two received
ones, none is announced lost, and each holds the last published offset. The twin without the
rebalance is tests/integration/rebalance/test_scale_up.py's (the new replicas stay empty).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import BrokerServer
from tests.support.procs import Procs
from tests.support.scaling import Rig, eventually

CLIENTS = 80


class Node:
    def __init__(self, js: Path, url: str, channel: str) -> None:
        cfg = {"url": url, "count": CLIENTS, "channel": channel, "concurrency": 20}
        self.proc = subprocess.Popen(
            ["node", str(js / "scale_clients.js"), json.dumps(cfg)],
            cwd=js,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        text = self.proc.stdout.readline()
        assert text, "the node clients exited"
        result: dict[str, Any] = json.loads(text)
        return result

    def send(self, op: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op}) + "\n")
        self.proc.stdin.flush()

    def report(self) -> dict[str, Any]:
        self.send("report")
        return self.line()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


async def test_official_js_clients_follow_a_scale_up_losing_nothing(
    procs: Procs, redis_server: BrokerServer, node_client_dir: Path
) -> None:
    rig = await asyncio.to_thread(Rig, procs, redis_server.url, rebalance=True)
    channel = f"js-scale-{uuid.uuid4().hex[:8]}"
    node = Node(node_client_dir, rig.url, channel)
    stop = asyncio.Event()
    published: list[int] = []

    async def publish() -> None:
        n = 0
        while not stop.is_set():
            published.append((await asyncio.to_thread(rig.publish, channel, n))[1])
            n += 1
            await asyncio.sleep(0.05)

    publisher: asyncio.Task[None] | None = None
    try:
        ready = await asyncio.wait_for(asyncio.to_thread(node.line), 60)
        assert ready == {"event": "ready", "clients": CLIENTS}
        publisher = asyncio.create_task(publish())
        assert sum((await asyncio.to_thread(rig.clients_per_hub))[:2]) == CLIENTS
        rig.scale_to(4)
        await eventually(lambda: rig.scaled(4), 20, lambda: rig.status())
        low, high = CLIENTS * 0.20, CLIENTS * 0.30
        await eventually(
            lambda: all(low <= c <= high for c in rig.clients_per_hub()),
            40,
            lambda: (rig.clients_per_hub(), rig.status()["rebalance"]),
        )
        stop.set()
        await publisher
        last = published[-1]
        report = await eventually(
            lambda: (r := node.report())["last"] >= last and r, 30, lambda: node.report()
        )
        assert report["duplicated"] == 0 and report["missing"] == 0, report
        assert report["notices"] == 0, report
        assert report["reconnects"] >= CLIENTS // 4, report
        assert report["closes"] == {"1012": report["reconnects"]}, report
    finally:
        stop.set()
        if publisher is not None:
            await asyncio.gather(publisher, return_exceptions=True)
        node.close()
