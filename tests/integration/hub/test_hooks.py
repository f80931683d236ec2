"""Hooks, namespaces and per-client limits against real processes: `limpet hub` replicas and an
application process (tests/support/hookapp.py) that decides from the forwarded session cookie.

Each feature has its twin: the same call on a hub without the feature (no hooks, default limits,
no secret, fail open) shows what happens without it.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import socketio

from tests.integration.hub.conftest import Peer, eventually, http_publish
from tests.support.procs import Procs, free_port, wait_listening

SECRET = "hook-secret-for-tests"
CONFIG = """\
namespaces:
  "ro:":
    publish: false
  "short:":
    history-ttl: 1
  "solo:":
    channels-per-client: 1
  "duo:":
    max-subscribers: 2
  "quiet:":
    join-leave: false
  "members:":
    anonymous-read: false
"""


class Rig:
    def __init__(self, app: str, hubs: dict[str, str]) -> None:
        self.app = app
        self.hubs = hubs


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    procs = Procs()
    try:
        app_port = free_port()
        app = procs.start(
            [sys.executable, "-m", "tests.support.hookapp", "--port", str(app_port),
             "--secret", SECRET],
            wait_for=("127.0.0.1", app_port), cwd=str(_root()),
        )  # fmt: skip
        assert app.poll() is None
        hook = f"http://127.0.0.1:{app_port}/hooks"
        config = procs.tmp / "hub.yaml"
        config.write_text(CONFIG)
        flavours = {
            "closed": ["--hook-url", hook, "--hook-secret", SECRET, "--config", str(config),
                       "--channels-per-client", "2", "--subscribes-per-second", "2"],
            "open": ["--hook-url", hook, "--hook-secret", SECRET, "--hook-fail-open"],
            "unsigned": ["--hook-url", hook],
            "plain": ["--config", str(config)],
            "breaker": ["--hook-url", hook, "--hook-secret", SECRET, "--hook-timeout", "0.3"],
        }  # fmt: skip
        hubs: dict[str, str] = {}
        started = []
        for name, extra in flavours.items():
            port = free_port()
            started.append((port, procs.limpet("hub", "--listen", f"127.0.0.1:{port}",
                                               "--name", name, *extra)))  # fmt: skip
            hubs[name] = f"http://127.0.0.1:{port}"
        for port, proc in started:
            wait_listening("127.0.0.1", port, proc=proc, timeout=45)
        yield Rig(f"http://127.0.0.1:{app_port}", hubs)
    finally:
        procs.close()


def _root() -> Any:
    from tests.support.procs import SRC

    return SRC.parent


def channel(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def connect(url: str, user: str | None = None) -> Peer:
    headers = {"Cookie": f"session={user}"} if user else {}
    return await Peer(user or "anon").connect(url, headers=headers)


async def seen(rig: Rig) -> list[list[Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{rig.app}/_seen") as resp:
        return list((await resp.json())["seen"])


async def test_subscribe_is_denied_by_the_app_as_an_error_ack_and_allowed_for_another(
    rig: Rig,
) -> None:
    room = channel("private:")
    bob, ann = await connect(rig.hubs["closed"], "bob"), await connect(rig.hubs["closed"], "ann")
    try:
        denied = await bob.subscribe(room)
        assert denied == {"error": f"bob is not a member of {room}", "code": 4403}
        allowed = await ann.subscribe(room)
        assert allowed["channel"] == room and allowed["offset"] == 0
        assert bob.sio.connected  # a denial is an answer, not a disconnect
    finally:
        await bob.close()
        await ann.close()


async def test_twin_without_hooks_anyone_subscribes(rig: Rig) -> None:
    bob = await connect(rig.hubs["plain"], "bob")
    try:
        assert "error" not in await bob.subscribe(channel("private:"))
    finally:
        await bob.close()


async def test_a_banned_user_is_refused_at_connect(rig: Rig) -> None:
    peer = Peer("banned")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await peer.connect(rig.hubs["closed"], headers={"Cookie": "session=banned"})
    refusal = {"message": "banned", "data": {"error": "banned", "code": 4401}}
    assert refusal in peer.connect_errors


async def test_publish_data_is_changed_by_the_app(rig: Rig) -> None:
    room = channel()
    ann = await connect(rig.hubs["closed"], "ann")
    try:
        await ann.subscribe(room)
        ack = await ann.call("publish", {"channel": room, "data": {"text": "hi", "by": "eve"}})
        assert ack["offset"] == 1
        await eventually(lambda: len(ann.messages[room]) == 1, what="the message")
        assert ann.messages[room][0]["data"] == {"text": "hi", "by": "ann"}
    finally:
        await ann.close()


async def test_twin_without_hooks_the_data_is_as_sent(rig: Rig) -> None:
    room = channel()
    ann = await connect(rig.hubs["plain"], "ann")
    try:
        await ann.subscribe(room)
        await ann.call("publish", {"channel": room, "data": {"text": "hi", "by": "eve"}})
        await eventually(lambda: len(ann.messages[room]) == 1, what="the message")
        assert ann.messages[room][0]["data"] == {"text": "hi", "by": "eve"}
    finally:
        await ann.close()


async def test_a_hook_outage_fails_closed(rig: Rig) -> None:
    ann = await connect(rig.hubs["closed"], "ann")
    try:
        ack = await ann.subscribe(channel("down:"))
        assert ack["code"] == 503 and "subscribe hook unavailable: HTTP 500" in ack["error"]
        ack = await ann.call("publish", {"channel": channel("down:"), "data": 1})
        assert ack["code"] == 503 and "publish hook unavailable" in ack["error"]
    finally:
        await ann.close()


async def test_twin_a_hook_outage_fails_open_where_set(rig: Rig) -> None:
    ann = await connect(rig.hubs["open"], "ann")
    try:
        room = channel("down:")
        assert (await ann.subscribe(room))["offset"] == 0
        assert (await ann.call("publish", {"channel": room, "data": {"x": 1}}))["offset"] == 1
        await eventually(lambda: len(ann.messages[room]) == 1, what="the message")
        assert ann.messages[room][0]["data"] == {"x": 1}  # as sent: the app was not reached
    finally:
        await ann.close()


async def test_healthz_counts_the_hooks_answers(rig: Rig) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{rig.hubs['closed']}/healthz") as r:
        (counts,) = (await r.json())["hooks"].values()
    assert counts["allow"] >= 1 and counts["breaker"] in ("closed", "open", "half-open")
    async with aiohttp.ClientSession() as http, http.get(f"{rig.hubs['plain']}/healthz") as r:
        assert "hooks" not in await r.json()  # twin: no hooks, nothing to count


async def test_unsigned_requests_are_refused_by_the_app(rig: Rig) -> None:
    """Twin of every test above: the same application refuses the hub without the secret, so
    the connect hook is an outage and the client is refused (fail closed)."""
    peer = Peer("ann")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await peer.connect(rig.hubs["unsigned"], headers={"Cookie": "session=ann"})
    assert any("connect hook unavailable: HTTP 401" in str(e) for e in peer.connect_errors)
    async with aiohttp.ClientSession() as http, http.get(f"{rig.app}/_seen") as resp:
        assert any("unsigned request" in r for r in (await resp.json())["refused"])


async def test_subscribe_grants_are_cached_while_connected(rig: Rig) -> None:
    room = channel("private:")
    ann = await connect(rig.hubs["closed"], "ann")
    try:
        for _ in range(2):
            assert "error" not in await ann.subscribe(room)
            assert (await ann.call("unsubscribe", {"channel": room})) == {"channel": room}
        asked = [s for s in await seen(rig) if s[0] == "subscribe" and s[2] == room]
        assert len(asked) == 1
    finally:
        await ann.close()


async def test_rpc_is_answered_by_the_app(rig: Rig) -> None:
    ann = await connect(rig.hubs["closed"], "ann")
    try:
        ack = await ann.call("rpc", {"method": "ping", "data": [1, 2]})
        assert ack == {"data": {"echo": [1, 2], "user": "ann"}}
    finally:
        await ann.close()


async def test_the_per_client_channel_limit_is_an_error_ack(rig: Rig) -> None:
    ann = await connect(rig.hubs["closed"], "ann")
    try:
        assert "error" not in await ann.subscribe(channel("solo:"))
        ack = await ann.subscribe(channel("solo:"))  # the namespace allows one
        assert "channel limit reached: 1 channels per client in namespace 'solo:'" in ack["error"]
        for _ in range(2):  # the default namespace: --channels-per-client 2, its own count
            assert "error" not in await ann.subscribe(channel())
        ack = await ann.subscribe(channel())
        assert "channel limit reached: 2 channels" in ack["error"]
    finally:
        await ann.close()


async def test_subscribes_per_second_are_limited(rig: Rig) -> None:
    ann = await connect(rig.hubs["closed"], "ann")
    try:
        room = channel()
        acks = [await ann.subscribe(room) for _ in range(6)]  # bursts of 2x 2/s
        assert any("too many subscribes: 2/s per client" in a.get("error", "") for a in acks)
    finally:
        await ann.close()


async def test_twin_default_limits_allow_a_few_channels(rig: Rig) -> None:
    ann = await connect(rig.hubs["open"], "ann")
    try:
        for _ in range(4):
            assert "error" not in await ann.subscribe(channel())
    finally:
        await ann.close()


async def test_a_namespace_without_client_publishing_refuses_it(rig: Rig) -> None:
    ann = await connect(rig.hubs["plain"], "ann")
    try:
        ack = await ann.call("publish", {"channel": channel("ro:"), "data": 1})
        assert ack == {"error": "clients may not publish to namespace 'ro:'"}
        assert (await ann.call("publish", {"channel": channel("rw:"), "data": 1}))["offset"] == 1
    finally:
        await ann.close()
    async with aiohttp.ClientSession() as http:  # the application still may, over HTTP
        status, body = await http_publish(http, rig.hubs["plain"], channel("ro:"), 1)
        assert status == 201 and body["offset"] == 1


async def test_a_history_ttl_expires_per_namespace(rig: Rig) -> None:
    url = rig.hubs["plain"]
    short, long = channel("short:"), channel("long:")
    async with aiohttp.ClientSession() as http:
        for room in (short, long):
            assert (await http_publish(http, url, room, "m"))[0] == 201

        async def kept(room: str) -> int:
            async with http.get(f"{url}/api/channels/{room}/messages?since=0") as resp:
                return len((await resp.json())["messages"])

        assert await kept(short) == 1
        counts: list[int] = []

        async def poll() -> bool:
            counts.append(await kept(short))
            return counts[-1] == 0

        for _ in range(200):  # bounded: the 1 s TTL passes within a few seconds
            if await poll():
                break
            await asyncio.sleep(0.05)
        assert counts[-1] == 0
        assert await kept(long) == 1  # twin: the default namespace's 300 s keeps it


async def test_a_channel_past_max_subscribers_is_an_error_ack(rig: Rig) -> None:
    room = channel("duo:")
    peers = [await connect(rig.hubs["plain"], name) for name in ("a", "b", "c")]
    try:
        for peer in peers[:2]:
            assert "error" not in await peer.subscribe(room)
        assert await peers[2].subscribe(room) == {"error": "channel full: 2 subscribers"}
        assert "error" not in await peers[2].subscribe(channel())  # twin: no limit elsewhere
    finally:
        for peer in peers:
            await peer.close()


async def test_join_leave_events_off_in_a_namespace(rig: Rig) -> None:
    ann = await connect(rig.hubs["plain"], "ann")
    try:
        ack = await ann.subscribe(channel("quiet:"), presence=True)
        assert "join/leave events are off" in ack["error"]
        assert "error" not in await ann.subscribe(channel(), presence=True)  # twin
    finally:
        await ann.close()


async def test_timeouts_open_the_breaker_and_it_refuses_without_asking(rig: Rig) -> None:
    ann = await connect(rig.hubs["breaker"], "ann")
    try:
        for _ in range(5):  # the breaker's threshold
            ack = await ann.subscribe(channel("slow:"))
            assert ack["code"] == 503 and "no answer within 0.3 s" in ack["error"], ack
        asked = len(await seen(rig))
        ack = await ann.subscribe(channel())  # a channel the app would allow at once
        assert ack["code"] == 503 and "breaker open" in ack["error"]
        assert len(await seen(rig)) == asked  # refused without reaching the application
    finally:
        await ann.close()
    bob = await connect(rig.hubs["closed"], "bob")  # twin: another hub's breaker is closed
    try:
        assert "error" not in await bob.subscribe(channel())
    finally:
        await bob.close()


async def test_anonymous_reads_off_refuse_anonymous_subscribes_and_http_reads(rig: Rig) -> None:
    room = channel("members:")
    anon = await connect(rig.hubs["plain"])
    try:
        ack = await anon.subscribe(room)
        assert "anonymous reads are off" in ack["error"]
    finally:
        await anon.close()
    ann = await connect(rig.hubs["closed"], "ann")  # the connect hook gives her an identity
    try:
        assert "error" not in await ann.subscribe(room)
    finally:
        await ann.close()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{rig.hubs['plain']}/api/channels/{room}/messages") as resp:
            assert resp.status == 401 and "anonymous reads are off" in (await resp.json())["error"]
        async with http.get(f"{rig.hubs['plain']}/api/channels/{channel()}/messages") as resp:
            assert resp.status == 200  # twin: the default namespace


async def test_a_clients_publishes_stay_in_order_through_a_slow_hook(rig: Rig) -> None:
    """The application answers the publish hook after random delays (out of order); the
    messages are stored, delivered and acknowledged in the order the client sent them."""
    room = channel("jitter:")
    ann = await connect(rig.hubs["open"], "ann")
    try:
        await ann.subscribe(room)
        acks: list[Any] = []
        done = asyncio.Event()

        def on_ack(ack: Any) -> None:
            acks.append(ack)
            if len(acks) == 20:
                done.set()

        for n in range(20):
            await ann.sio.emit("publish", {"channel": room, "data": {"text": n}}, callback=on_ack)
        await asyncio.wait_for(done.wait(), 20)
        assert [a["offset"] for a in acks] == list(range(1, 21))
        await eventually(lambda: len(ann.messages[room]) == 20, what="all delivered")
        assert [m["data"]["text"] for m in ann.messages[room]] == list(range(20))
    finally:
        await ann.close()


def test_a_bad_config_file_exits_2_naming_every_error(tmp_path: Any) -> None:
    import subprocess

    from tests.support.procs import limpet_env

    bad = tmp_path / "hub.yaml"
    bad.write_text('namespaces:\n  "a:":\n    publish: maybe\n    nope: 1\nlimits:\n  x: 1\n')
    done = subprocess.run(
        [sys.executable, "-m", "limpet", "hub", "--listen", "127.0.0.1:1", "--config", str(bad)],
        env=limpet_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"{bad}:3: namespaces.a:.publish: expected bool" in done.stderr
    assert f"{bad}:4: namespaces.a:.nope: unknown key" in done.stderr
    assert f"{bad}:6: limits.x: unknown key" in done.stderr
    assert "Traceback" not in done.stderr
