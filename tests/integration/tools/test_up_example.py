"""`limpet up --example chat`: the example application behind the proxy with the hubs. A user
signs in with a cookie session, the hub asks the app (connect hook) who the socket is (a forged
cookie is refused, none is an anonymous visitor whom the namespaces keep out), the app
refuses a stranger's direct message (subscribe hook), rewrites a publish (publish hook) and
learns who is online from the hub's channel events. The app checks every hook's signature: an
unsigned request is refused (the twin)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import urllib.request
from typing import Any

import aiohttp
import pytest
import socketio

from limpet.hub.hooks.signing import signed_headers
from tests.integration.hub.conftest import Peer
from tests.integration.tools.test_up import all_gone, check, start_up
from tests.support.procs import SRC, Procs, free_port

EXAMPLE = SRC.parent / "examples" / "chat"


async def sign_in(url: str, name: str) -> str:
    """The session cookie the app sets for ``name`` (through the proxy)."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.post(f"{url}/login", data={"name": name}, allow_redirects=False) as resp:
            assert resp.status == 303, await resp.text()
        cookie = next(c for c in jar if c.key == "chat_session")
        return f"chat_session={cookie.value}"


async def online(url: str) -> list[str]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/online") as resp:
        return list(await resp.json())


async def until(what: str, check: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_up_example_chat(procs: Procs) -> None:
    proc, port, _, pids = start_up(procs, "--replicas", "1", "--example", "chat")
    assert set(pids) == {"hub-1", "chat-app", "proxy"}
    url = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(f"{url}/", timeout=5) as resp:
        assert "Sign in" in resp.read().decode()  # the app's page, through the proxy
    visitor = await Peer("visitor").connect(url)  # no session: anonymous
    try:
        assert "anonymous reads are off" in (await visitor.subscribe("room:lobby"))["error"]
    finally:
        await visitor.close()
    forger = Peer("forger")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await forger.connect(url, headers={"Cookie": "chat_session=ann.0000"})
    assert any("bad session" in str(e) for e in forger.connect_errors)
    banner_checks = check(f"{url}/", "--transport", "socketio", "--clients", "2")
    assert banner_checks.returncode == 0, banner_checks.stdout  # the banner's commands work
    assert check(f"{url}/healthz", "--identify", "json:name").returncode == 0
    ann = await Peer("ann").connect(url, headers={"Cookie": await sign_in(url, "ann")})
    bob = await Peer("bob").connect(url, headers={"Cookie": await sign_in(url, "bob")})
    try:
        for peer in (ann, bob):
            assert "error" not in await peer.subscribe("room:lobby")
        await until("ann and bob online", lambda: _equals(online(url), ["ann", "bob"]))
        assert (await bob.subscribe("dm:ann:carl"))["code"] == 4403
        ack = await ann.call("publish", {"channel": "room:lobby", "data": {"text": "  hi  "}})
        assert ack["offset"] >= 1
        await _until_sync(lambda: bool(bob.messages["room:lobby"]), "bob hears ann")
        data = bob.messages["room:lobby"][0]["data"]
        assert data["text"] == "hi" and data["from"] == "ann"  # rewritten by the app
        ack = await ann.call("publish", {"channel": "online", "data": {"online": ["eve"]}})
        assert "clients may not publish" in ack["error"]
        assert await ann.call("rpc", {"method": "online"}) == {"data": ["ann", "bob"]}
        await bob.close()
        await until("bob offline", lambda: _equals(online(url), ["ann"]))
    finally:
        await ann.close()
        await bob.close()
    procs.kill(proc, signal.SIGINT)
    assert all_gone(list(pids.values()))


async def _equals(pending: Any, expected: list[str]) -> bool:
    return bool(await pending == expected)


async def _until_sync(check: Any, what: str) -> None:
    async def wrapped() -> bool:
        return bool(check())

    await until(what, wrapped)


async def test_the_example_app_checks_signatures(procs: Procs, tmp_path: Any) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    port = free_port()
    procs.start(
        [sys.executable, str(EXAMPLE / "app.py"), "--listen", f"127.0.0.1:{port}",
         "--hub-url", "http://127.0.0.1:9", "--hook-secret-file", str(secret)],
        wait_for=("127.0.0.1", port),
    )  # fmt: skip
    body = json.dumps({"client": "c", "cookies": {}}).encode()
    async with aiohttp.ClientSession() as http:
        hook = f"http://127.0.0.1:{port}/hooks/connect"
        headers = {
            "Content-Type": "application/json",
            **signed_headers(b"s3cret", body, time.time()),
        }
        async with http.post(hook, data=body, headers=headers) as resp:
            assert resp.status == 200
            assert await resp.json() == {"result": {}}  # no session: anonymous
        async with http.post(hook, data=body) as resp:  # twin: unsigned
            assert resp.status == 401 and "unsigned request" in await resp.text()
        wrong = {**headers, **signed_headers(b"other", body, time.time())}
        async with http.post(hook, data=body, headers=wrong) as resp:
            assert resp.status == 401 and "bad signature" in await resp.text()
