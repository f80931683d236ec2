"""A subscribe storm from the official socket.io client: every acknowledged subscription hears
every message, in order, even when subscribes outnumber the replica's broker connections."""

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

CLIENTS = 300
MESSAGES = 40


async def read_event(proc: asyncio.subprocess.Process, event: str, timeout: float) -> Any:
    assert proc.stdout is not None
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout)
        assert line, "node storm exited"
        reply = json.loads(line)
        if reply["event"] == event:
            return reply


@pytest.mark.parametrize("queueing", [True, False], ids=["pool-queues", "twin-pool-refuses"])
async def test_subscribe_storm_every_acknowledged_subscription_hears_everything(
    queueing: bool, node_client_dir: Path, redis_server: Any, procs: Procs
) -> None:
    """The scenario that used to refuse a third of the subscribes: 150 simultaneous subscribes
    per replica (3 Redis commands each) against a pool of 32 connections, which they now queue
    for instead of failing with "Too many connections". The twin: one connection that nobody
    may wait for (1 ms), so most subscribes cannot reach the broker. They are refused with an
    error ack, and every subscribe that was acknowledged still hears every message.

    The channel is in a namespace without presence: with presence, a Redis hub sends the
    subscribes of a storm in shared transactions (``join_and_read``), a handful of connections
    for all of them, and even the twin's one connection would serve the storm. Here every
    subscribe takes a pooled connection of its own, as on Redis Cluster."""
    config = procs.tmp / "no-presence.yaml"
    config.write_text('namespaces:\n  "storm:":\n    presence: false\n')
    extra = ["--config", str(config)]
    if not queueing:
        extra += ["--broker-pool", "1", "--broker-pool-wait", "0.001"]
    reps = start_hub_procs(procs, redis_server.url, 2, *extra)
    channel = f"storm:{uuid.uuid4().hex[:8]}"
    node = which_or_skip("node")
    proc = await asyncio.create_subprocess_exec(
        node, str(node_client_dir / "hub_storm.js"), channel, str(CLIENTS), ",".join(reps.urls),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=node_client_dir,
    )  # fmt: skip
    try:
        acked = await read_event(proc, "acked", 60)
        if queueing:
            assert acked == {"event": "acked", "ok": CLIENTS, "errors": []}
        else:
            assert 0 < acked["ok"] < CLIENTS, acked
            assert all("broker unavailable" in e for e in acked["errors"]), acked["errors"][:3]
        async with aiohttp.ClientSession() as http:
            for n in range(MESSAGES):
                # (the twin's 1 ms pool can refuse a publish too: 503, nothing stored; again)
                for _ in range(50):
                    status, _ = await http_publish(http, reps.urls[n % 2], channel, n)
                    if status != 503 or queueing:
                        break
                    await asyncio.sleep(0.01)
                assert status == 201
        assert proc.stdin is not None
        proc.stdin.write(json.dumps({"op": "wait", "count": MESSAGES}).encode() + b"\n")
        await proc.stdin.drain()
        received = await read_event(proc, "received", 60)
        assert received == {"event": "received", "complete": acked["ok"], "short": []}
        for rep in reps.procs:
            assert "Too many connections" not in procs.output(rep)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
