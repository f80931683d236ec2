"""The dashboard's event stream: status and traffic points every second, and the hub replicas
the proxy fronts (a plain backend is not mistaken for one)."""

from __future__ import annotations

import json
import time

import aiohttp

from tests.integration.proxy.conftest import Client, start_proxy
from tests.support.procs import Procs, free_port


def hub(procs: Procs, name: str) -> str:
    port = free_port()
    procs.limpet("hub", "--listen", f"127.0.0.1:{port}", "--broker", "memory", "--name", name,
                 wait_for=("127.0.0.1", port))  # fmt: skip
    return f"http://127.0.0.1:{port}"


async def test_events_name_the_hub_replicas_and_count_requests(procs: Procs) -> None:
    backends = {"h1": hub(procs, "hub-one"), "h2": hub(procs, "hub-two")}
    backends["plain"] = procs.whoami("plain", "127.0.0.1", None, "--no-socketio")
    proxy = start_proxy(procs, backends, "--affinity", "none")
    url = f"http://127.0.0.1:{proxy.admin_port}/events"
    frame: dict = {}
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        async for line in resp.content:
            if not line.startswith(b"data: "):
                continue
            frame = json.loads(line[6:])
            if len(frame["hubs"]) == 2 and frame["status"]["totals"]["requests"] >= 9:
                break
            if frame["status"]["totals"]["requests"] < 9:
                for _ in range(9):
                    Client(proxy.url, jar=False).get("/healthz")
            assert time.monotonic() < deadline, frame
    assert {h["name"] for h in frame["hubs"].values()} == {"hub-one", "hub-two"}
    assert set(frame["hubs"]) == {"h1", "h2"}  # whoami's /healthz is no hub's
    assert frame["history"] and len(frame["history"][-1]) == 3
