"""The chat page at / in headless Chromium: the vendored socket.io browser client joins a
channel, shows its history, publishes, and receives its own message back live.

Chromium is driven over the DevTools protocol (its own WebSocket API, with `websockets`), reading
the page's state until the expected lines appear.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any

import pytest
import websockets

from tests.support.procs import Procs, free_port, which_or_skip

pytestmark = pytest.mark.e2e

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


async def _page_socket(devtools: int, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            targets = _get_json(f"http://127.0.0.1:{devtools}/json")
            pages = [t for t in targets if t.get("type") == "page" and "webSocketDebuggerUrl" in t]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("chromium devtools did not come up")
        await asyncio.sleep(0.1)


async def _wait_for_text(ws_url: str, needles: list[str], timeout: float = 20) -> str:
    expression = "document.getElementById('log').innerText + '\\n' + document.getElementById('presence').innerText"
    text = ""
    async with websockets.connect(ws_url, max_size=None) as ws:
        deadline = time.monotonic() + timeout
        ident = 0
        while time.monotonic() < deadline:
            ident += 1
            await ws.send(
                json.dumps(
                    {
                        "id": ident,
                        "method": "Runtime.evaluate",
                        "params": {"expression": expression, "returnByValue": True},
                    }
                )
            )
            while True:
                reply = json.loads(await ws.recv())
                if reply.get("id") == ident:
                    break
            text = str(reply.get("result", {}).get("result", {}).get("value", ""))
            if all(n in text for n in needles):
                return text
            await asyncio.sleep(0.1)
    raise AssertionError(f"page never showed {needles}; it shows:\n{text}")


async def test_chat_page_joins_publishes_and_receives(procs: Procs) -> None:
    chromium = which_or_skip("chromium", "/usr/bin/chromium")
    port = free_port()
    procs.limpet(
        "hub", "--listen", f"127.0.0.1:{port}", "--name", "h1", wait_for=("127.0.0.1", port)
    )
    base = f"http://127.0.0.1:{port}"
    request = urllib.request.Request(
        f"{base}/api/channels/chat.e2e/messages",
        data=json.dumps({"data": {"user": "bob", "text": "from-http"}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 201
    with urllib.request.urlopen(f"{base}/static/socket.io.min.js", timeout=5) as resp:
        assert b"Socket.IO v4" in resp.read(200)

    devtools = free_port()
    procs.start(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={procs.tmp / 'chromium'}",
            f"--remote-debugging-port={devtools}",
            "--remote-allow-origins=*",
            f"{base}/?channel=chat.e2e&user=carol&say=hello-from-browser",
        ]
    )
    text = await _wait_for_text(
        await _page_socket(devtools), ["from-http", "#2 carol", "hello-from-browser", "carol @h1"]
    )
    assert text.index("from-http") < text.index("hello-from-browser")

    page = _get_json(f"{base}/api/channels/chat.e2e/messages")
    assert [m["data"]["text"] for m in page["messages"]] == ["from-http", "hello-from-browser"]
