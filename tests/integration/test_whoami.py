"""`limpet whoami` as DESIGN.md specifies it: the name on the first line, and a WebSocket echo."""

from __future__ import annotations

import urllib.request

import pytest

from tests.support.procs import Procs


def test_get_any_path_answers_name_first(procs: Procs) -> None:
    url = procs.whoami("alpha")
    for path in ("/", "/some/path?x=1"):
        with urllib.request.urlopen(url + path, timeout=5) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            assert resp.read().decode().splitlines()[0] == "alpha"


async def test_websocket_echo_prefixes_name(procs: Procs) -> None:
    websockets = pytest.importorskip("websockets")
    url = procs.whoami("beta").replace("http://", "ws://") + "/ws"
    async with websockets.connect(url) as ws:
        await ws.send("hello")
        assert await ws.recv() == "beta: hello"
