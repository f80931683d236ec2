"""Channel events reach the application at least once and in order per channel, across a
SIGKILL of the replica that saw them and a restart of the application's endpoint: they wait in
the broker (a Redis stream). The twin, on the memory broker, keeps them in the killed process
and loses them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from typing import Any

import aiohttp
import pytest

from tests.integration.hub.conftest import Peer, http_publish
from tests.support.procs import SRC, Procs, free_port, wait_listening

SECRET = "events-secret"
EXPECTED = ["occupied", "join", "publish", "leave", "vacated"]


def start_app(procs: Procs, port: int) -> subprocess.Popen[bytes]:
    return procs.start(
        [sys.executable, "-m", "tests.support.hookapp", "--port", str(port), "--secret", SECRET],
        wait_for=("127.0.0.1", port),
        cwd=str(SRC.parent),
    )


def start_hub(procs: Procs, broker: str, app_port: int, name: str) -> tuple[str, Any]:
    port = free_port()
    proc = procs.limpet(
        "hub", "--listen", f"127.0.0.1:{port}", "--broker", broker, "--name", name,
        "--events-url", f"http://127.0.0.1:{app_port}/events", "--hook-secret", SECRET,
        "--events-lease", "1.5",  # a killed deliverer is replaced sooner
    )  # fmt: skip
    wait_listening("127.0.0.1", port, proc=proc, timeout=45)
    return f"http://127.0.0.1:{port}", proc


async def make_events(url: str, channels: list[str]) -> None:
    """Per channel: occupied, join, publish, leave, vacated."""
    peer = await Peer("p").connect(url)
    try:
        async with aiohttp.ClientSession() as http:
            for name in channels:
                assert "error" not in await peer.subscribe(name)
                assert (await http_publish(http, url, name, {"n": 1}))[0] == 201
                assert await peer.call("unsubscribe", {"channel": name}) == {"channel": name}
    finally:
        await peer.close()


async def received(app: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{app}/_events") as resp:
        return list(await resp.json())


def by_channel(events: list[dict[str, Any]], channels: list[str]) -> dict[str, list[str]]:
    """Each channel's event types in arrival order, duplicates (same id) dropped."""
    seen: set[str] = set()
    out: dict[str, list[str]] = {c: [] for c in channels}
    for event in events:
        if event["id"] in seen or event["channel"] not in out:
            continue
        seen.add(event["id"])
        out[event["channel"]].append(event["type"])
    return out


async def until(what: str, check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("broker", ["redis", "nats"])
async def test_events_survive_a_replica_sigkill_and_an_app_restart(
    broker: str, procs: Procs, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue(f"{broker}_server")
    app_port = free_port()
    app = start_app(procs, app_port)
    doomed, doomed_proc = start_hub(procs, server.url, app_port, "e0")
    start_hub(procs, server.url, app_port, "e1")
    procs.kill(app)  # the application's endpoint is down while the events happen
    channels = [f"ev-{uuid.uuid4().hex[:8]}-{i}" for i in range(3)]
    await make_events(doomed, channels)
    async with aiohttp.ClientSession() as http:

        async def in_the_broker() -> bool:  # nothing left in the replica's own buffer
            async with http.get(f"{doomed}/healthz") as resp:
                return int((await resp.json())["events_buffered"]) == 0

        await until("the events in the broker's queue", in_the_broker)
    procs.kill(doomed_proc)  # SIGKILL: whatever it held in memory is gone
    start_app(procs, app_port)  # the endpoint is back, on the same address
    app_url = f"http://127.0.0.1:{app_port}"

    async def all_there() -> bool:
        got = by_channel(await received(app_url), channels)
        return all(len(types) == len(EXPECTED) for types in got.values())

    await until("every event at the application", all_there)
    got = by_channel(await received(app_url), channels)
    assert got == {c: EXPECTED for c in channels}  # every one, in order per channel


async def test_twin_events_held_by_one_process_are_lost_with_it(procs: Procs) -> None:
    app_port = free_port()
    app = start_app(procs, app_port)
    url, hub = start_hub(procs, "memory", app_port, "m0")
    procs.kill(app)
    channels = [f"ev-{uuid.uuid4().hex[:8]}-{i}" for i in range(3)]
    await make_events(url, channels)
    async with aiohttp.ClientSession() as http:

        async def retried() -> bool:  # delivery was tried and failed: they are held
            async with http.get(f"{url}/healthz") as resp:
                return int((await resp.json()).get("events_retries", 0)) >= 1

        await until("a failed delivery", retried)
    procs.kill(hub)
    start_app(procs, app_port)
    app_url = f"http://127.0.0.1:{app_port}"
    url, _ = start_hub(procs, "memory", app_port, "m1")
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    await make_events(url, [marker])

    async def marker_there() -> bool:
        return len(by_channel(await received(app_url), [marker])[marker]) == len(EXPECTED)

    await until("the restarted replica's events", marker_there)
    lost = by_channel(await received(app_url), channels)
    assert lost == {c: [] for c in channels}  # none of them arrived


async def test_events_past_the_queue_limit_are_dropped_and_counted(procs: Procs) -> None:
    port = free_port()
    hub = procs.limpet(
        "hub", "--listen", f"127.0.0.1:{port}", "--events-queue", "3",
        "--events-url", f"http://127.0.0.1:{free_port()}/events",  # nobody there
    )  # fmt: skip
    wait_listening("127.0.0.1", port, proc=hub, timeout=45)
    url = f"http://127.0.0.1:{port}"
    await make_events(url, [f"ev-{uuid.uuid4().hex[:8]}"])  # five events, room for three
    async with aiohttp.ClientSession() as http:

        async def counted() -> bool:
            async with http.get(f"{url}/healthz") as resp:
                health = await resp.json()
                return bool(health["events_dropped"] == 2 and health["events_buffered"] == 0)

        await until("two drops counted", counted)
    assert "channel event(s) dropped: the queue holds 3" in procs.output(hub)  # and logged
