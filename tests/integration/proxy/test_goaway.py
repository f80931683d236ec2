"""Graceful stop: at the drain deadline an open WebSocket gets a close frame with 1001 (going
away), not a reset (1006); the twin through an L4 tunnel shows the reset."""

from __future__ import annotations

import os
import signal

import pytest

from tests.integration.proxy.conftest import start_proxy
from tests.support.procs import Procs


async def close_code_at_stop(procs: Procs, three: dict[str, str], *extra: str) -> int | None:
    websockets = pytest.importorskip("websockets")
    proxy = start_proxy(procs, {"alpha": three["alpha"]}, "--drain-timeout", "0.2", *extra)
    async with websockets.connect(proxy.url.replace("http://", "ws://") + "/ws") as ws:
        await ws.send("hi")
        assert await ws.recv() == "alpha: hi"
        os.kill(proxy.proc.pid, signal.SIGTERM)  # type: ignore[attr-defined]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    return closed.value.rcvd.code if closed.value.rcvd is not None else 1006


async def test_a_websocket_gets_1001_at_the_drain_deadline(
    procs: Procs, three: dict[str, str]
) -> None:
    assert await close_code_at_stop(procs, three) == 1001


async def test_twin_an_l4_tunnel_is_reset(procs: Procs, three: dict[str, str]) -> None:
    assert await close_code_at_stop(procs, three, "--mode", "tcp", "--affinity", "none") == 1006
