"""limpet.socketio.StreamManager: plain python-socketio servers, ordered and loss-free across
replicas on a Redis Stream, even when the listener's Redis connection is killed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
import socketio
from aiohttp import web

from limpet.socketio import StreamManager
from tests.integration.hub.conftest import eventually
from tests.support.procs import free_port


@pytest.fixture
async def two_apps(
    redis_server: Any, request: pytest.FixtureRequest
) -> AsyncIterator[list[tuple[socketio.AsyncServer, str]]]:
    """Two python-socketio servers; with ``indirect`` param "default", python-socketio's own
    in-process manager instead of StreamManager (the twin)."""
    channel = f"sm-{free_port()}"
    manager = getattr(request, "param", "stream")
    apps: list[tuple[socketio.AsyncServer, str]] = []
    runners = []
    for _ in range(2):
        client_manager = (
            StreamManager(redis_server.url, channel=channel)
            if manager == "stream"
            else socketio.AsyncManager()
        )
        sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=client_manager)

        @sio.on("join")
        async def join(sid: str, room: str, sio: socketio.AsyncServer = sio) -> str:
            await sio.enter_room(sid, room)
            return "ok"

        app = web.Application()
        sio.attach(app)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        apps.append((sio, f"http://127.0.0.1:{port}"))
    await asyncio.sleep(0.3)  # both listeners positioned at the stream's end
    try:
        yield apps
    finally:
        for sio, _ in apps:
            listener = getattr(sio.manager, "thread", None)  # the manager's XREAD task
            if listener is not None:
                listener.cancel()
        for runner in runners:
            await runner.cleanup()


async def test_emits_from_one_replica_reach_clients_of_another_in_order_despite_a_killed_listener(
    two_apps: list[tuple[socketio.AsyncServer, str]], redis_server: Any
) -> None:
    (sio_a, _url_a), (_sio_b, url_b) = two_apps
    got: list[int] = []
    client = socketio.AsyncClient(reconnection=False)
    client.on("news", lambda data: got.append(data["n"]))
    await client.connect(url_b, transports=["websocket"])
    admin = aioredis.from_url(redis_server.url)
    try:
        assert await client.call("join", "room-1", timeout=5) == "ok"
        for n in range(10):
            await sio_a.emit("news", {"n": n}, room="room-1")
        await eventually(lambda: len(got) >= 10, what="first ten")
        # kill every normal client connection (the blocked XREADs among them) mid-stream
        await admin.client_kill_filter(_type="normal", skipme=True)
        for n in range(10, 30):
            await sio_a.emit("news", {"n": n}, room="room-1")
        await eventually(lambda: len(got) >= 30, timeout=20, what="all thirty")
        await asyncio.sleep(0.2)
        assert got == list(range(30))
    finally:
        await client.disconnect()
        await admin.aclose()


@pytest.mark.parametrize("two_apps", ["default"], indirect=True)
async def test_twin_without_stream_manager_emits_stay_on_their_replica(
    two_apps: list[tuple[socketio.AsyncServer, str]],
) -> None:
    (sio_a, _url_a), (sio_b, url_b) = two_apps
    got: list[int] = []
    client = socketio.AsyncClient(reconnection=False)
    client.on("news", lambda data: got.append(data["n"]))
    await client.connect(url_b, transports=["websocket"])
    try:
        assert await client.call("join", "room-1", timeout=5) == "ok"
        for n in range(10):
            await sio_a.emit("news", {"n": n}, room="room-1")
        # a marker from the client's own replica: once it is in, A's emits had their chance
        await sio_b.emit("news", {"n": -1}, room="room-1")
        await eventually(lambda: -1 in got, what="the local marker")
        assert got == [-1]
    finally:
        await client.disconnect()
