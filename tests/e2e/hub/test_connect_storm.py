"""A connect storm from the official socket.io client: CLIENTS clients (split over node
processes) connect to one hub on redis-server at the same moment, each subscribing once
connected, with a connect timeout of TIMEOUT_MS and socket.io's own reconnection. With admission
control every one is subscribed within DEADLINE_S, the surplus was refused at once (503 +
Retry-After) and came back, the hub never held more than its limit of handshakes at once, and
it logs no traceback. The twin, admission off: the same storm is served all at once, past that
limit (the hub's own peak of handshakes in flight, from /healthz), and nobody is refused; on a
loaded machine its last clients also time out (reported, not asserted: a quiet machine serves
1 000 at once in time, and the peak is what admission bounds).

On a quiet machine the admission run has no time-outs at all; on a machine shared with other
heavy work the clients' own event loops fall behind too, so the count is reported, not asserted.
CLIENTS defaults to 1 000 to keep CI short on 2 cores; LIMPET_STORM_CLIENTS=6000 runs the
issue's size (docs/hub.md, "Admission control")."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.hub.conftest import start_hub_procs
from tests.support.procs import Procs, which_or_skip

pytestmark = pytest.mark.e2e

CLIENTS = int(os.environ.get("LIMPET_STORM_CLIENTS", "1000"))
PROCESSES = max(1, CLIENTS // 1000)
TIMEOUT_MS = 4000
DEADLINE_S = 90
#: handshakes the admission run lets in at once (a storm of CLIENTS goes past it without one)
LIMIT = min(500, CLIENTS // 4)


async def storm(node_dir: Path, url: str, transports: str) -> dict[str, Any]:
    node = which_or_skip("node")
    channel = f"storm-{uuid.uuid4().hex[:8]}"
    share = [CLIENTS // PROCESSES + (i < CLIENTS % PROCESSES) for i in range(PROCESSES)]
    runs = [
        await asyncio.create_subprocess_exec(
            node,
            "hub_connect_storm.js",
            url,
            channel,
            str(n),
            transports,
            str(TIMEOUT_MS),
            str(DEADLINE_S * 1000),
            stdout=asyncio.subprocess.PIPE,
            cwd=node_dir,
        )
        for n in share
    ]
    total: dict[str, Any] = {"subscribed": 0, "timeout": 0, "refused": 0, "other": 0}
    try:
        for run in runs:
            out, _ = await asyncio.wait_for(run.communicate(), DEADLINE_S + 30)
            report = json.loads(out.decode().strip().splitlines()[-1])
            total["subscribed"] += report["subscribed"]
            for kind in ("timeout", "refused", "other"):
                total[kind] += report["errors"][kind]
    finally:
        for run in runs:
            if run.returncode is None:
                run.kill()
                await run.wait()
    return total


@pytest.mark.parametrize("admission", [True, False], ids=["admission", "twin-no-admission"])
async def test_a_connect_storm_is_served_without_timeouts_or_tracebacks(
    admission: bool, node_client_dir: Path, redis_server: Any, procs: Procs
) -> None:
    limit = str(LIMIT) if admission else "0"
    hub = start_hub_procs(procs, redis_server.url, 1, "--max-handshakes", limit)
    result = await storm(node_client_dir, hub.urls[0], "polling,websocket")
    async with aiohttp.ClientSession() as http, http.get(f"{hub.urls[0]}/healthz") as resp:
        gate = (await resp.json())["admission"]
    log = procs.output(hub.procs[0])
    print(f"storm of {CLIENTS}, admission {'on' if admission else 'off'}: {result}, {gate}")
    if admission:
        assert result["subscribed"] == CLIENTS, result
        assert result["refused"] > 0, result  # it was a storm: the surplus was told to wait
        assert gate["peak"] <= LIMIT, gate
        assert "Traceback" not in log, log[-3000:]
    else:
        assert result["refused"] == 0 and gate["refused"] == 0, (result, gate)
        assert gate["peak"] > LIMIT, gate  # served all at once: past what admission allows
