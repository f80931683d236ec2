"""The official socket.io JavaScript client (node) against three hub replicas on Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.integration.hub.conftest import http_publish, start_hub_procs
from tests.support.procs import Procs, which_or_skip

pytestmark = pytest.mark.e2e


class NodePeer:
    """hub_client.js under node: one JSON command in, one JSON event out."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, js: Path, channel: str) -> NodePeer:
        node = which_or_skip("node")
        proc = await asyncio.create_subprocess_exec(
            node, str(js / "hub_client.js"), channel,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=js,
        )  # fmt: skip
        return cls(proc)

    async def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        await self.proc.stdin.drain()

    async def expect(self, event: str, timeout: float = 15) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            assert line, "node client exited"
            reply = json.loads(line)
            assert reply["event"] != "connect_error", reply
            if reply["event"] == event:
                return dict(reply)

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def test_node_client_receives_in_order_and_recovers_on_another_replica(
    node_client_dir: Path, redis_server: Any, procs: Procs
) -> None:
    reps = start_hub_procs(procs, redis_server.url)
    channel = f"js-{uuid.uuid4().hex[:8]}"
    peer = await NodePeer.start(node_client_dir, channel)
    try:
        async with aiohttp.ClientSession() as http:
            # default transports: polling first, then the upgrade to websocket
            await peer.send(op="connect", url=reps.urls[0])
            await peer.expect("connected")
            await peer.send(op="subscribe")
            ack = (await peer.expect("ack"))["ack"]
            assert ack["offset"] == 0 and ack["recovered"] is False
            for n in range(5):
                await http_publish(http, reps.urls[1 + n % 2], channel, {"n": n})
            await peer.send(op="publish", data={"n": 5})
            published = (await peer.expect("published"))["ack"]
            assert published["offset"] == 6 and published["epoch"] == ack["epoch"]
            await peer.send(op="wait", count=6)
            got = (await peer.expect("received"))["messages"]
            assert [m["offset"] for m in got] == [1, 2, 3, 4, 5, 6]
            assert [m["data"]["n"] for m in got] == [0, 1, 2, 3, 4, 5]

            await peer.send(op="disconnect")
            await peer.expect("disconnected")
            for n in range(6, 10):
                await http_publish(http, reps.urls[1], channel, {"n": n})
            # come back on another replica, polling only, from where we were
            await peer.send(op="connect", url=reps.urls[2], transports=["polling"])
            await peer.expect("connected")
            await peer.send(op="subscribe", since={"epoch": ack["epoch"], "offset": 6})
            back = await peer.expect("ack")
            assert back["ack"]["recovered"] is True and back["ack"]["offset"] == 10
            assert back["before"] == 6, "the ack arrives before the recovered messages"
            await http_publish(http, reps.urls[0], channel, {"n": 10})
            await peer.send(op="wait", count=11)
            got = (await peer.expect("received"))["messages"]
            assert [m["offset"] for m in got] == list(range(1, 12))
            assert [m["data"]["n"] for m in got] == list(range(11))
    finally:
        await peer.close()
