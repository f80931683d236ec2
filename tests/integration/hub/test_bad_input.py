"""Bad input gets a clear error in the one JSON shape, {"error": ...}, and the replica goes on."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp
import jwt
import pytest
import socketio

from tests.integration.hub.conftest import Peer, eventually, http_publish, start_hub_procs
from tests.support.procs import Procs, free_port

SECRET = "a-test-secret-that-is-at-least-32-bytes"


async def raw_socketio(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    """A socket.io connection spoken by hand (Engine.IO v4 over websocket), so a test can send
    what no client library would encode."""
    ws = await http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket")
    assert (await ws.receive_str(timeout=10)).startswith("0")  # Engine.IO open
    await ws.send_str("40")  # socket.io connect
    assert (await ws.receive_str(timeout=10)).startswith("40")
    return ws


async def ack_of(ws: aiohttp.ClientWebSocketResponse, ack_id: int) -> Any:
    while True:
        frame = await ws.receive_str(timeout=10)
        if frame == "2":  # Engine.IO ping
            await ws.send_str("3")
        elif frame.startswith(f"43{ack_id}["):
            return json.loads(frame[len(f"43{ack_id}") :])[0]


async def test_huge_since_offsets_get_an_error_ack(
    redis_server: Any, procs: Procs, http: aiohttp.ClientSession
) -> None:
    (url,) = start_hub_procs(procs, redis_server.url, 1).urls
    channel = f"since-{uuid.uuid4().hex[:8]}"
    ws = await raw_socketio(http, url)
    try:
        for ack_id, digits in enumerate([17, 4001, 5000], start=1):  # 5000: past int parsing
            since = f'{{"epoch": "e", "offset": {"9" * digits}}}'
            await ws.send_str(
                f'42{ack_id}["subscribe", {{"channel": "{channel}", "since": {since}}}]'
            )
            ack = await ack_of(ws, ack_id)
            assert "error" in ack, ack
            assert ("offset must be an integer" in ack["error"]) or (
                "not valid JSON" in ack["error"]
            )
        await ws.send_str(f'429["subscribe", {{"channel": "{channel}"}}]')
        assert (await ack_of(ws, 9))["offset"] == 0  # still serving this very connection
    finally:
        await ws.close()
    async with http.get(f"{url}/api/channels/{channel}/messages?since={'9' * 4001}") as r:
        assert r.status == 400 and "since and limit" in (await r.json())["error"]


async def test_a_10_mb_publish_gets_an_error_ack_not_a_dropped_connection(
    redis_server: Any, procs: Procs
) -> None:
    (url,) = start_hub_procs(procs, redis_server.url, 1).urls
    channel = f"big-{uuid.uuid4().hex[:8]}"
    p = await Peer("p").connect(url)
    try:
        ack = await p.call("publish", {"channel": channel, "data": "x" * (10 << 20)}, timeout=30)
        assert "payload too large" in ack.get("error", ""), str(ack)[:200]
        assert p.sio.connected and not p.disconnected.is_set()
        assert (await p.call("publish", {"channel": channel, "data": "small"}))["offset"] == 1
    finally:
        await p.close()


async def test_http_errors_are_json_in_one_shape(
    redis_server: Any, procs: Procs, http: aiohttp.ClientSession
) -> None:
    (url,) = start_hub_procs(procs, redis_server.url, 1, "--max-payload", "1000").urls
    big = b'{"data": "' + b"x" * (2 << 20) + b'"}'  # past the HTTP body limit (1 MiB here)
    cases: list[tuple[str, str, bytes | None, int]] = [
        ("POST", "/api/channels/c/messages", big, 413),
        ("POST", "/api/channels/c/messages", b'{"data": "' + b"x" * 1500 + b'"}', 413),
        ("GET", "/no/such/path", None, 404),
        ("PUT", "/api/channels/c/messages", b"{}", 405),
        ("POST", "/api/channels/c/messages", b'{"data": ' + b"[" * 1400 + b"]" * 1400 + b"}", 400),
        ("POST", "/api/channels/c/messages", b'{"data": NaN}', 400),
    ]
    for method, path, body, status in cases:
        async with http.request(method, f"{url}{path}", data=body) as r:
            assert r.status == status, (method, path, r.status)
            assert r.content_type == "application/json", (method, path)
            answer = await r.json()
            assert list(answer) == ["error"] and answer["error"], (method, path, answer)
    assert (await http_publish(http, url, "c", "ok"))[0] == 201


@pytest.mark.parametrize("require_exp", [True, False])
async def test_jwt_without_exp_is_refused_when_exp_is_required(
    require_exp: bool, procs: Procs, http: aiohttp.ClientSession
) -> None:
    """With --jwt-require-exp a token without exp is refused; the twin (the default) accepts it,
    and such a token never expires (documented)."""
    port = free_port()
    flags = ["--jwt-require-exp"] if require_exp else []
    procs.limpet(
        "hub", "--listen", f"127.0.0.1:{port}", "--jwt-secret", SECRET, *flags,
        wait_for=("127.0.0.1", port),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    forever = jwt.encode({"sub": "alice"}, SECRET)
    expiring = jwt.encode({"sub": "alice", "exp": 4_000_000_000}, SECRET)
    headers = {"Authorization": f"Bearer {forever}"}
    async with http.post(f"{url}/api/channels/c/messages", json={"data": 1}, headers=headers) as r:
        assert r.status == (401 if require_exp else 201)
        if require_exp:
            assert '"exp"' in (await r.json())["error"]
    p = Peer("p")
    if require_exp:
        with pytest.raises(socketio.exceptions.ConnectionError):
            await p.connect(url, auth={"token": forever})
        assert p.connect_errors and "exp" in str(p.connect_errors[-1])
    else:
        await p.connect(url, auth={"token": forever})
        await p.close()
    ok = await Peer("q").connect(url, auth={"token": expiring})
    try:
        await ok.subscribe("c")
        assert (await ok.call("publish", {"channel": "c", "data": "x"}))["offset"] >= 1
        await eventually(lambda: len(ok.offsets("c")) == 1, what="delivery")
    finally:
        await ok.close()
