"""The official socket.io client (node) against a hub whose hooks ask the application: the
session cookie it sends decides (a subscribe denied as an error ack for bob, allowed for ann),
and the application rewrites what ann publishes. Twin: the same client without a cookie is
anonymous and denied as well (the denial comes from the hook, not from the client)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.hub.test_js_client import NodePeer
from tests.support.procs import SRC, Procs, free_port, wait_listening

pytestmark = pytest.mark.e2e
SECRET = "js-hooks-secret"


async def test_the_js_client_is_judged_by_the_app(node_client_dir: Path, procs: Procs) -> None:
    app_port, hub_port = free_port(), free_port()
    procs.start(
        [sys.executable, "-m", "tests.support.hookapp", "--port", str(app_port),
         "--secret", SECRET],
        wait_for=("127.0.0.1", app_port), cwd=str(SRC.parent),
    )  # fmt: skip
    hub = procs.limpet(
        "hub", "--listen", f"127.0.0.1:{hub_port}", "--hook-secret", SECRET,
        "--hook-url", f"http://127.0.0.1:{app_port}/hooks",
    )  # fmt: skip
    wait_listening("127.0.0.1", hub_port, proc=hub, timeout=45)
    url = f"http://127.0.0.1:{hub_port}"
    room = f"private:{uuid.uuid4().hex[:8]}"
    acks: dict[str, Any] = {}
    for user in ("bob", "ann", None):
        peer = await NodePeer.start(node_client_dir, room)
        try:
            headers = {"Cookie": f"session={user}"} if user else {}
            await peer.send(op="connect", url=url, headers=headers, transports=["websocket"])
            await peer.expect("connected")
            await peer.send(op="subscribe")
            acks[str(user)] = (await peer.expect("ack"))["ack"]
            if user == "ann":
                await peer.send(op="publish", data={"text": "hi", "by": "eve"})
                assert (await peer.expect("published"))["ack"]["offset"] == 1
                await peer.send(op="wait", count=1)
                got = (await peer.expect("received"))["messages"]
                assert got[0]["data"] == {"text": "hi", "by": "ann"}
        finally:
            await peer.close()
    assert acks["bob"] == {"error": f"bob is not a member of {room}", "code": 4403}
    assert acks["ann"]["channel"] == room and "error" not in acks["ann"]
    assert acks["None"]["code"] == 4403  # anonymous: the app's user is the client id
