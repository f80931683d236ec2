"""Hub test helpers: three hub replicas on one broker, and socket.io clients that keep score."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest
import socketio

from tests.support.procs import Procs, free_port, wait_listening

REPLICAS = 3


async def eventually(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    """Wait (bounded) until ``predicate()`` holds; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.02)


class Peer:
    """A python-socketio client that records what each channel delivered, in order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sio = socketio.AsyncClient(reconnection=False)
        self.messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.recoveries: list[dict[str, Any]] = []
        self.presence: list[tuple[str, dict[str, Any]]] = []
        self.disconnected = asyncio.Event()
        self.connect_errors: list[object] = []
        self.sio.on("connect_error", self.connect_errors.append)
        self.sio.on("message", self._on_message)
        self.sio.on("recovery", self.recoveries.append)
        self.sio.on("join", lambda p: self.presence.append(("join", p)))
        self.sio.on("leave", lambda p: self.presence.append(("leave", p)))
        self.sio.on("disconnect", lambda *a: self.disconnected.set())

    def _on_message(self, message: dict[str, Any]) -> None:
        self.messages[message["channel"]].append(message)

    async def connect(self, url: str, transports: list[str] | None = None, **kw: Any) -> Peer:
        await self.sio.connect(url, transports=transports or ["websocket"], wait_timeout=10, **kw)
        return self

    async def call(self, event: str, data: Any, timeout: float = 10) -> Any:
        return await self.sio.call(event, data, timeout=timeout)

    async def subscribe(
        self, channel: str, since: dict[str, Any] | None = None, *, presence: bool = False
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"channel": channel}
        if since is not None:
            payload["since"] = since
        if presence:
            payload["presence"] = True
        return dict(await self.call("subscribe", payload))

    def offsets(self, channel: str) -> list[int]:
        return [m["offset"] for m in self.messages[channel]]

    def position(self, channel: str, ack: dict[str, Any]) -> dict[str, Any]:
        """Where this client is: its last message, else the subscribe ack."""
        if self.messages[channel]:
            last = self.messages[channel][-1]
            return {"epoch": last["epoch"], "offset": last["offset"]}
        return {"epoch": ack["epoch"], "offset": ack["offset"]}

    async def close(self) -> None:
        # python-engineio's polling client waits for its pending long-poll GET (up to the
        # ping interval) on disconnect; the close packet is sent at once, so don't wait for it.
        try:
            await asyncio.wait_for(self.sio.disconnect(), 1.0)
        except (TimeoutError, Exception):
            pass


async def http_publish(
    session: aiohttp.ClientSession, url: str, channel: str, data: Any, **extra: Any
) -> tuple[int, dict[str, Any]]:
    async with session.post(
        f"{url}/api/channels/{channel}/messages", json={"data": data, **extra}
    ) as resp:
        return resp.status, await resp.json()


class Replicas:
    """Hub replicas: processes on a real broker, or (memory) in this process on one backplane."""

    def __init__(self, urls: list[str], procs: list[Any] | None = None) -> None:
        self.urls = urls
        self.procs = procs or []


def start_hub_procs(procs: Procs, broker: str, count: int = REPLICAS, *extra: str) -> Replicas:
    ports = [free_port() for _ in range(count)]
    started = [
        procs.limpet(
            "hub", "--listen", f"127.0.0.1:{port}", "--broker", broker, "--name", f"h{i}", *extra
        )
        for i, port in enumerate(ports)
    ]
    for port, proc in zip(ports, started, strict=True):
        try:
            wait_listening("127.0.0.1", port, proc=proc, timeout=45)
        except Exception as exc:
            raise RuntimeError(f"hub did not start: {exc}\n{procs.output(proc)}") from exc
    return Replicas([f"http://127.0.0.1:{p}" for p in ports], started)


async def start_memory_hubs(count: int = REPLICAS, **settings: Any) -> tuple[Replicas, Any]:
    from aiohttp import web

    from limpet.hub.brokers.base import BrokerOptions
    from limpet.hub.brokers.memory import MemoryBackplane, MemoryBroker
    from limpet.hub.server import Hub
    from limpet.hub.settings import HubSettings

    plane = MemoryBackplane()
    runners = []
    urls = []
    for i in range(count):
        hub = Hub(
            MemoryBroker(BrokerOptions(), backplane=plane), HubSettings(name=f"m{i}", **settings)
        )
        runner = web.AppRunner(hub.app(), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        urls.append(f"http://127.0.0.1:{port}")
    return Replicas(urls), runners


@pytest.fixture(scope="module")
def shared_hubs() -> Iterator[tuple[Procs, dict[str, Replicas]]]:
    """Hub processes shared by a module's tests (each test uses its own channels)."""
    owner = Procs()
    try:
        yield owner, {}
    finally:
        owner.close()


@pytest.fixture(params=["memory", "redis", "nats"])
async def replicas(request: pytest.FixtureRequest) -> AsyncIterator[Replicas]:
    """Three hub replicas sharing one broker of each kind in turn."""
    if request.param == "memory":
        reps, runners = await start_memory_hubs()
        try:
            yield reps
        finally:
            for runner in runners:
                await runner.cleanup()
        return
    owner, started = request.getfixturevalue("shared_hubs")
    if request.param not in started:
        server = request.getfixturevalue(f"{request.param}_server")
        started[request.param] = start_hub_procs(owner, server.url)
    yield started[request.param]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
