"""The hub's promise: every message of a channel, in order, or a notice that something was not.

Each test reproduces one way a subscriber used to lose messages without being told, against
real redis-server / nats-server processes, and shows what the hub does instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import urllib.request
import uuid
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.conftest import start_redis
from tests.integration.hub.conftest import Peer, eventually, http_publish, start_hub_procs
from tests.support.procs import Procs


def deep(depth: int) -> Any:
    value: Any = "core"
    for _ in range(depth):
        value = [value]
    return value


async def publish_until_accepted(
    http: aiohttp.ClientSession, url: str, channel: str, data: Any
) -> dict[str, Any]:
    """Publish once the broker is back (bounded): the first 201 answer."""
    for _ in range(100):
        status, body = await http_publish(http, url, channel, data)
        if status == 201:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"publish never accepted: {status} {body}")


# --- (1) a subscribe the broker could not be told about ------------------------------------------


async def test_subscribe_while_the_broker_is_down_is_an_error_ack_not_a_deaf_subscription(
    procs: Procs, http: aiohttp.ClientSession
) -> None:
    server = start_redis(procs)
    (url,) = start_hub_procs(procs, server.url, 1).urls
    channel = f"down-{uuid.uuid4().hex[:8]}"
    a = await Peer("a").connect(url)
    try:
        server.stop()
        ack = await a.subscribe(channel)
        assert "broker unavailable" in ack.get("error", ""), ack
        server.start()
        await publish_until_accepted(http, url, channel, "before")
        ack = await a.subscribe(channel)  # the twin: once the broker answers, it works
        assert ack["recovered"] is False and ack["offset"] == 1
        await http_publish(http, url, channel, "after")
        await eventually(lambda: a.offsets(channel) == [2], what="live after subscribing")
    finally:
        await a.close()


# --- (2) a poison message -----------------------------------------------------------------------


async def test_deep_or_non_finite_data_is_refused_at_publish(
    redis_server: Any, procs: Procs, http: aiohttp.ClientSession
) -> None:
    reps = start_hub_procs(procs, redis_server.url, 2)
    channel = f"poison-{uuid.uuid4().hex[:8]}"
    a = await Peer("a").connect(reps.urls[0])
    try:
        await a.subscribe(channel)
        for depth in (600, 2000):  # 2000: past what a JSON parser on the stack can read
            body = b'{"data": ' + b"[" * depth + b"]" * depth + b"}"
            async with http.post(f"{reps.urls[1]}/api/channels/{channel}/messages", data=body) as r:
                assert r.status == 400, await r.text()
                assert "nested" in (await r.json())["error"]
        ack = await a.call("publish", {"channel": channel, "data": deep(100)})
        assert "nested deeper than 32" in ack["error"], ack
        for bad in (b"1e999", b'[1, {"x": -1e400}]'):
            async with http.post(
                f"{reps.urls[1]}/api/channels/{channel}/messages", data=b'{"data": ' + bad + b"}"
            ) as r:
                assert r.status == 400 and "error" in await r.json()
        for value in (float("nan"), float("inf"), [1, float("-inf")]):
            ack = await a.call("publish", {"channel": channel, "data": value})
            assert "NaN and Infinity" in ack.get("error", ""), ack
        for n in range(3):
            assert (await http_publish(http, reps.urls[1], channel, n))[0] == 201
        await eventually(lambda: a.offsets(channel) == [1, 2, 3], what="the good messages")
        assert a.recoveries == []
    finally:
        await a.close()


def store_directly(admin: Any, channel: str, raw: bytes) -> Any:
    """Append ``raw`` as a message's data by the publish script itself, skipping the checks at
    publish, as an older replica or one with larger limits would."""
    from limpet.hub.brokers.redis import PUBLISH

    keys = [f"limpet:{{{channel}}}:{part}" for part in ("meta", "stream", "meta", "live")]
    now = int(time.time() * 1000)
    args = ["e", raw, now, 1000, 300_000, 60_000, "0", json.dumps(channel), "PUBLISH", "0"]
    args.append(3_600_000)  # the state TTL (ms)
    return admin.eval(PUBLISH, 4, *keys, *args)


async def test_an_unreadable_stored_message_is_announced_and_the_stream_goes_on(
    redis_server: Any, procs: Procs, http: aiohttp.ClientSession
) -> None:
    """Two messages that skipped the checks at publish: 40 deep (past --max-depth 32, which
    every JSON parser reads) and 5 000 deep (which Python 3.13's parsers read, and 3.11's and
    3.12's do not: before the hub measured depth itself, a 3.13 replica delivered it whole
    while a 3.12 one announced a gap). On every version, by the hub's rule, their subscribers
    on every replica get a notice at their offsets instead, every later message still
    arrives, and recovery over them works."""
    reps = start_hub_procs(procs, redis_server.url, 2)
    channel = f"poison2-{uuid.uuid4().hex[:8]}"
    peers = [await Peer(f"p{i}").connect(url) for i, url in enumerate(reps.urls)]
    admin = aioredis.from_url(redis_server.url)
    late: list[Peer] = []
    try:
        acks = [await p.subscribe(channel) for p in peers]
        assert (await http_publish(http, reps.urls[0], channel, "first"))[0] == 201
        for depth in (40, 5000):
            await store_directly(admin, channel, b"[" * depth + b"]" * depth)
        for n in range(5):
            assert (await http_publish(http, reps.urls[n % 2], channel, n))[0] == 201

        def seen(p: Peer) -> list[int]:
            return sorted(p.offsets(channel) + [r["offset"] for r in p.recoveries])

        everything = [1, 2, 3, 4, 5, 6, 7, 8]
        for p in peers:
            await eventually(lambda p=p: seen(p) == everything, what=f"{p.name} stream")
            assert p.offsets(channel) == [1, 4, 5, 6, 7, 8]
            assert [(r["offset"], r["recovered"]) for r in p.recoveries] == [
                (2, False),
                (3, False),
            ]
        b = await Peer("b").connect(reps.urls[1])
        late.append(b)
        ack = await b.subscribe(channel, {"epoch": acks[0]["epoch"], "offset": 0})
        assert "error" not in ack and ack["offset"] == 8
        await eventually(lambda: seen(b) == everything, what="recovery over them")
        assert b.offsets(channel) == [1, 4, 5, 6, 7, 8]
        async with http.get(f"{reps.urls[0]}/api/channels/{channel}/messages?since=1") as r:
            page = await r.json()
        assert r.status == 200 and [m["offset"] for m in page["messages"][:2]] == [2, 3]
        for m in page["messages"][:2]:
            assert "error" in m and "data" not in m
    finally:
        for p in [*peers, *late]:
            await p.close()
        await admin.aclose()


async def test_a_stored_message_within_the_replicas_depth_limit_is_delivered(
    redis_server: Any, procs: Procs, http: aiohttp.ClientSession
) -> None:
    """The twin: the same 40-deep stored message reaches the subscriber of a replica started
    with --max-depth 64, live and in history: the limit is what decides, not the parser."""
    (url,) = start_hub_procs(procs, redis_server.url, 1, "--max-depth", "64").urls
    channel = f"deep-ok-{uuid.uuid4().hex[:8]}"
    a = await Peer("a").connect(url)
    admin = aioredis.from_url(redis_server.url)
    try:
        await a.subscribe(channel)
        await store_directly(admin, channel, b"[" * 40 + b"]" * 40)
        await eventually(lambda: a.offsets(channel) == [1], what="the 40-deep message")
        assert a.recoveries == []
        assert json.dumps(a.messages[channel][0]["data"]) == "[" * 40 + "]" * 40
        async with http.get(f"{url}/api/channels/{channel}/messages?since=0") as r:
            page = await r.json()
        assert json.dumps(page["messages"][0]["data"]) == "[" * 40 + "]" * 40
    finally:
        await a.close()
        await admin.aclose()


# --- (3) an epoch change ------------------------------------------------------------------------


@pytest.mark.parametrize("history", [1000, 5])
async def test_after_an_epoch_change_the_new_epoch_is_delivered_from_offset_1(
    history: int, procs: Procs, http: aiohttp.ClientSession
) -> None:
    """Redis restarts empty while the subscriber's replica is paused (SIGSTOP), and 12 messages
    of the new epoch are published before it runs again: it must not skip them. The twin: with
    a history of 5 the new epoch's start is gone too, and that is announced as well."""
    server = start_redis(procs)
    reps = start_hub_procs(procs, server.url, 2, "--history-size", str(history))
    channel = f"epoch-{uuid.uuid4().hex[:8]}"
    a = await Peer("a").connect(reps.urls[0])
    try:
        await a.subscribe(channel)
        for n in range(3):
            await http_publish(http, reps.urls[1], channel, n)
        await eventually(lambda: a.offsets(channel) == [1, 2, 3], what="before the restart")
        old = a.messages[channel][-1]["epoch"]

        paused = reps.procs[0]
        os.kill(paused.pid, signal.SIGSTOP)  # (Procs.kill would wait for it to exit)
        try:
            server.stop()
            server.start()  # no persistence: a new epoch
            first = await publish_until_accepted(http, reps.urls[1], channel, "new-0")
            for n in range(1, 12):
                await http_publish(http, reps.urls[1], channel, f"new-{n}")
        finally:
            os.kill(paused.pid, signal.SIGCONT)
        new = first["epoch"]
        assert new != old and first["offset"] == 1

        await eventually(lambda: bool(a.recoveries), timeout=20, what="the epoch notice")
        assert a.recoveries[0] == {
            "channel": channel,
            "epoch": new,
            "offset": 0,
            "recovered": False,
        }
        await http_publish(http, reps.urls[1], channel, "new-12")
        await eventually(lambda: a.offsets(channel)[-1:] == [13], timeout=20, what="live again")
        got = [(m["epoch"], m["offset"]) for m in a.messages[channel]]
        if history == 1000:
            assert got == [(old, 1), (old, 2), (old, 3)] + [(new, n) for n in range(1, 14)]
            assert len(a.recoveries) == 1
        else:  # the twin: 1..7 are gone from the new epoch's history too, and it is said
            assert got == [(old, 1), (old, 2), (old, 3), (new, 13)]
            assert [(r["epoch"], r["offset"]) for r in a.recoveries] == [(new, 0), (new, 12)]
    finally:
        await a.close()


# --- (4) a gap history cannot fill, a lost last message, a slow NATS consumer --------------------


async def test_an_unfillable_gap_unsubscribes_with_a_notice_and_since_resumes(
    procs: Procs, http: aiohttp.ClientSession
) -> None:
    """History reads fail (the hub's Redis user loses the right to run scripts) right when the
    subscriber must re-sync: after its bounded retries the hub says the gap was not filled and
    ends the subscription; subscribing again with that position recovers everything."""
    server = start_redis(procs)
    admin = aioredis.from_url(server.url)
    await admin.execute_command("ACL", "SETUSER", "hub", "on", ">pw", "~*", "&*", "+@all")
    url = f"redis://hub:pw@127.0.0.1:{server.port}"
    reps = start_hub_procs(procs, url, 2)
    channel = f"unfilled-{uuid.uuid4().hex[:8]}"
    a = await Peer("a").connect(reps.urls[0])
    try:
        ack = await a.subscribe(channel)
        await http_publish(http, reps.urls[1], channel, 0)
        await eventually(lambda: a.offsets(channel) == [1], what="first")
        await admin.execute_command("ACL", "SETUSER", "hub", "-@scripting")
        assert await admin.client_kill_filter(_type="pubsub") >= 2  # -> re-sync from history
        await eventually(lambda: bool(a.recoveries), timeout=30, what="the notice")
        notice = a.recoveries[-1]
        assert notice == {
            "channel": channel,
            "epoch": ack["epoch"],
            "offset": 1,
            "recovered": False,
            "subscribed": False,
        }
        await admin.execute_command("ACL", "SETUSER", "hub", "+@all")
        for n in (1, 2):
            await publish_until_accepted(http, reps.urls[1], channel, n)
        back = await a.subscribe(channel, {"epoch": notice["epoch"], "offset": notice["offset"]})
        assert back["recovered"] is True and back["offset"] == 3
        await eventually(lambda: a.offsets(channel) == [1, 2, 3], what="resumed with since")
    finally:
        await a.close()
        await admin.aclose()


async def test_a_lost_last_message_is_noticed_by_the_position_check(
    redis_server: Any, procs: Procs, http: aiohttp.ClientSession
) -> None:
    """A message reaches history but not the live stream, and nothing follows it. The replica
    with the periodic position check delivers it; the twin, with the check off, does not until
    the next message shows the gap."""
    reps = start_hub_procs(procs, redis_server.url, 1, "--check-interval", "0.2")
    (off,) = start_hub_procs(procs, redis_server.url, 1, "--check-interval", "0").urls
    channel = f"tail-{uuid.uuid4().hex[:8]}"
    a = await Peer("a").connect(reps.urls[0])
    b = await Peer("b").connect(off)
    admin = aioredis.from_url(redis_server.url)
    try:
        await a.subscribe(channel)
        await b.subscribe(channel)
        await http_publish(http, off, channel, "one")
        await eventually(lambda: a.offsets(channel) == b.offsets(channel) == [1], what="first")
        # stored like the publish script stores it, but never published live
        meta, stream = f"limpet:{{{channel}}}:meta", f"limpet:{{{channel}}}:stream"
        offset = await admin.hincrby(meta, "o", 1)
        await admin.xadd(stream, {"d": b'"two"', "t": str(int(time.time() * 1000))}, f"{offset}-0")
        await eventually(lambda: a.offsets(channel) == [1, 2], what="the check delivers it")
        assert b.offsets(channel) == [1]  # the twin: no check, nothing shows the gap
        await http_publish(http, off, channel, "three")
        await eventually(lambda: b.offsets(channel) == [1, 2, 3], what="the gap filled")
        assert [m["data"] for m in a.messages[channel]] == ["one", "two"] + (
            ["three"] if len(a.messages[channel]) == 3 else []
        )
    finally:
        for p in (a, b):
            await p.close()
        await admin.aclose()


async def test_nats_slow_consumer_resyncs_from_history(
    nats_server: Any, procs: Procs, http: aiohttp.ClientSession
) -> None:
    """nats-py drops live messages past a subscription's pending limit (a slow consumer). The
    replica re-syncs from history, so the client still gets every message in order."""
    from aiohttp import web

    from limpet.hub.brokers.base import BrokerOptions
    from limpet.hub.brokers.nats import NatsBroker
    from limpet.hub.channels import Message
    from limpet.hub.server import Hub
    from limpet.hub.settings import HubSettings
    from tests.support.procs import free_port

    (publisher,) = start_hub_procs(procs, nats_server.url, 1).urls
    broker = NatsBroker(nats_server.url, BrokerOptions())
    broker.pending_limit = 20
    hub = Hub(broker, HubSettings(name="slow", check_interval=0))
    runner = web.AppRunner(hub.app(), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    channel = f"slow-{uuid.uuid4().hex[:8]}"
    total = 200
    flood_done = threading.Event()

    def flood() -> None:  # from a thread: this event loop is about to be blocked
        for n in range(1, total):
            request = urllib.request.Request(
                f"{publisher}/api/channels/{channel}/messages",
                data=f'{{"data": {n}}}'.encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 201
        flood_done.set()

    deliver = hub._on_envelope
    blocked = False

    def slow_consumer(record: Any) -> None:
        nonlocal blocked
        if not blocked and isinstance(record, Message) and record.channel == channel:
            blocked = True  # hold the whole replica while the flood piles up on the socket
            threading.Thread(target=flood, daemon=True).start()
            assert flood_done.wait(30)
        deliver(record)

    broker.on_envelope = slow_consumer
    a = await Peer("a").connect(f"http://127.0.0.1:{port}")
    try:
        await a.subscribe(channel)
        await http_publish(http, publisher, channel, 0)
        await eventually(lambda: len(a.offsets(channel)) >= total, timeout=30, what="all")
        assert broker.slow_consumers >= 1, "the flood must overrun the pending limit"
        assert a.offsets(channel) == list(range(1, total + 1))
        assert [m["data"] for m in a.messages[channel]] == list(range(total))
    finally:
        await a.close()
        await runner.cleanup()
