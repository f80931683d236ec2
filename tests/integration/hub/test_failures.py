"""Failures: a replica SIGKILLed mid-stream, Redis restarted or dropping the subscriber, bad input."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from typing import Any

import aiohttp
import jwt
import pytest
import redis.asyncio as aioredis
import socketio

from limpet.errors import BrokerError
from limpet.hub.brokers import redis as redis_module
from limpet.hub.brokers.base import BrokerOptions
from limpet.hub.brokers.redis import RedisBroker
from tests.conftest import start_redis
from tests.integration.hub.conftest import (
    Peer,
    eventually,
    http_publish,
    start_hub_procs,
)
from tests.support.procs import Procs, free_port


@pytest.mark.parametrize("broker", ["redis", "nats"])
async def test_replica_killed_clients_resume_elsewhere_without_loss_or_duplicate(
    broker: str, request: pytest.FixtureRequest, procs: Procs, http: aiohttp.ClientSession
) -> None:
    server = request.getfixturevalue(f"{broker}_server")
    reps = start_hub_procs(procs, server.url)
    channel = f"kill-{uuid.uuid4().hex[:8]}"
    a = await Peer("a").connect(reps.urls[0])  # resumes with `since`
    c = await Peer("c").connect(reps.urls[0], ["polling"])  # the twin: resumes without it
    b = await Peer("b").connect(reps.urls[1])
    moved: list[Peer] = []
    try:
        ack_a = await a.subscribe(channel)
        await c.subscribe(channel)
        await b.subscribe(channel)
        total = 60

        async def publisher() -> None:
            for n in range(total):
                status, _ = await http_publish(http, reps.urls[2], channel, n)
                assert status == 201
                await asyncio.sleep(0.01)

        flow = asyncio.create_task(publisher())
        await eventually(lambda: len(a.messages[channel]) >= 10, what="a receives")
        procs.kill(reps.procs[0])
        await asyncio.wait_for(a.disconnected.wait(), 15)
        since = a.position(channel, ack_a)
        a2 = await Peer("a2").connect(reps.urls[1])
        moved.append(a2)
        ack = await a2.subscribe(channel, since)
        assert ack["recovered"] is True and ack["offset"] >= since["offset"]

        await asyncio.wait_for(c.disconnected.wait(), 15)
        last_c = c.offsets(channel)[-1]
        await eventually(lambda: b.offsets(channel)[-1] > last_c + 1, what="publishes after c left")
        c2 = await Peer("c2").connect(reps.urls[2])
        moved.append(c2)
        ack_c = await c2.subscribe(channel)
        assert ack_c["recovered"] is False

        await flow
        await eventually(lambda: len(b.messages[channel]) >= total, what="b receives all")
        await eventually(
            lambda: a2.offsets(channel)[-1:] == [total], what="a2 catches up to the end"
        )
        await asyncio.sleep(0.2)
        everything = list(range(1, total + 1))
        assert b.offsets(channel) == everything
        assert a.offsets(channel) + a2.offsets(channel) == everything  # nothing lost or doubled
        assert [m["data"] for m in a.messages[channel] + a2.messages[channel]] == list(range(total))
        twin = c.offsets(channel) + c2.offsets(channel)
        assert twin != everything and set(everything) - set(twin), "without since, a gap"
    finally:
        for p in [a, b, c, *moved]:
            await p.close()


async def test_redis_restart_resumes_and_reports_lost_history(
    procs: Procs, http: aiohttp.ClientSession
) -> None:
    server = start_redis(procs)
    reps = start_hub_procs(procs, server.url, 2)
    channel = f"restart-{uuid.uuid4().hex[:8]}"
    a = await Peer("a").connect(reps.urls[0])
    late: list[Peer] = []
    try:
        await a.subscribe(channel)
        for n in range(3):
            await http_publish(http, reps.urls[1], channel, n)
        await eventually(lambda: a.offsets(channel) == [1, 2, 3], what="before restart")
        old_epoch = a.messages[channel][-1]["epoch"]

        server.stop()
        server.start()  # same port, empty: no persistence, history gone

        await eventually(lambda: bool(a.recoveries), timeout=20, what="a recovery notice")
        notice = a.recoveries[-1]
        assert notice["channel"] == channel and notice["recovered"] is False
        assert notice["epoch"] != old_epoch

        status = 0
        body: dict[str, object] = {}
        for _ in range(50):
            status, body = await http_publish(http, reps.urls[1], channel, "after")
            if status == 201:
                break
            await asyncio.sleep(0.2)
        assert status == 201 and body["epoch"] == notice["epoch"]
        await eventually(
            lambda: a.messages[channel][-1]["data"] == "after", what="live after the restart"
        )
        assert a.messages[channel][-1]["offset"] == body["offset"]

        b = await Peer("b").connect(reps.urls[1])
        late.append(b)
        ack = await b.subscribe(channel, {"epoch": old_epoch, "offset": 3})
        assert ack["recovered"] is False and ack["epoch"] == notice["epoch"]
    finally:
        for p in [a, *late]:
            await p.close()


async def test_killed_subscriber_connection_heals_without_loss(
    redis_server: object, procs: Procs, http: aiohttp.ClientSession
) -> None:
    url = redis_server.url  # type: ignore[attr-defined]
    reps = start_hub_procs(procs, url, 2)
    channel = f"heal-{uuid.uuid4().hex[:8]}"
    a = await Peer("a").connect(reps.urls[0])
    admin = aioredis.from_url(url)
    try:
        await a.subscribe(channel)
        await http_publish(http, reps.urls[1], channel, 0)
        await eventually(lambda: a.offsets(channel) == [1], what="first")
        killed = await admin.client_kill_filter(_type="pubsub")
        assert killed >= 2
        for n in range(1, 6):
            status, _ = await http_publish(http, reps.urls[1], channel, n)
            assert status == 201
        await eventually(lambda: len(a.messages[channel]) >= 6, timeout=20, what="healed")
        await asyncio.sleep(0.2)
        assert a.offsets(channel) == [1, 2, 3, 4, 5, 6]
    finally:
        await a.close()
        await admin.aclose()


SECRET = "a-test-secret-that-is-at-least-32-bytes"


async def test_bad_input_gets_error_acks_and_the_replica_survives(
    procs: Procs, http: aiohttp.ClientSession
) -> None:
    port = free_port()
    hub = procs.limpet(
        "hub", "--listen", f"127.0.0.1:{port}", "--name", "solo",
        "--jwt-secret", SECRET, "--max-payload", "1000",
        wait_for=("127.0.0.1", port),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    token = jwt.encode({"sub": "alice", "channels": ["chat.*"], "publish": ["chat.*"]}, SECRET)

    for bad in [
        "garbage",
        jwt.encode({"sub": "x"}, "another-secret-that-is-at-least-32-bytes"),
        None,
    ]:
        refused = Peer("refused")
        with pytest.raises(socketio.exceptions.ConnectionError):
            await refused.connect(url, auth={"token": bad} if bad else None)
        assert refused.connect_errors and "JWT" in str(refused.connect_errors[-1])

    p = await Peer("alice").connect(url, auth={"token": token})
    try:
        cases = [
            ("frobnicate", {"x": 1}, "unknown event"),
            ("publish", {"channel": "chat.a", "data": "x" * 5000}, "payload too large"),
            ("subscribe", {"channel": "bad name"}, "invalid channel"),
            ("subscribe", {"channel": ""}, "empty"),
            ("subscribe", {"channel": "news"}, "does not grant"),
            ("publish", {"channel": "news", "data": 1}, "does not grant"),
            ("publish", {"channel": "chat.a"}, "'data'"),
            ("subscribe", "chat.a", "payload must be an object"),
            ("subscribe", {"channel": "chat.a", "since": {"epoch": 1}}, "since"),
            ("unsubscribe", {"channel": "chat.never"}, "not subscribed"),
        ]
        for event, payload, expected in cases:
            ack = await p.call(event, payload)
            assert isinstance(ack, dict) and expected in ack.get("error", ""), (event, ack)

        headers = {"Authorization": f"Bearer {token}"}
        async with http.post(f"{url}/api/channels/chat.a/messages", json={"data": 1}) as r:
            assert r.status == 401 and "JWT" in (await r.json())["error"]
        async with http.post(
            f"{url}/api/channels/bad%20name/messages", json={"data": 1}, headers=headers
        ) as r:
            assert r.status == 400 and "invalid channel" in (await r.json())["error"]
        async with http.post(
            f"{url}/api/channels/chat.a/messages", data=b"{nope", headers=headers
        ) as r:
            assert r.status == 400 and "not JSON" in (await r.json())["error"]
        async with http.post(
            f"{url}/api/channels/chat.a/messages", json={"data": "x" * 1500}, headers=headers
        ) as r:
            assert r.status == 413
        async with http.get(f"{url}/api/channels/chat.a/messages?since=-1", headers=headers) as r:
            assert r.status == 400

        # still serving, and the good path works
        assert hub.poll() is None
        ack = await p.subscribe("chat.a")
        assert ack["offset"] == 0
        assert (await p.call("publish", {"channel": "chat.a", "data": "ok"}))["offset"] == 1
        await eventually(lambda: p.offsets("chat.a") == [1], what="delivery")
        async with http.get(f"{url}/healthz") as r:
            assert r.status == 200
    finally:
        await p.close()


async def test_presence_of_a_crashed_replica_expires(
    redis_server: object, procs: Procs, http: aiohttp.ClientSession
) -> None:
    url = redis_server.url  # type: ignore[attr-defined]
    reps = start_hub_procs(procs, url, 2, "--presence-ttl", "1.5")
    channel = f"pres-{uuid.uuid4().hex[:8]}"
    a = await Peer("a").connect(reps.urls[0])
    b = await Peer("b").connect(reps.urls[1])
    try:
        await a.subscribe(channel)
        await b.subscribe(channel)

        async def members() -> list[str]:
            async with http.get(f"{reps.urls[1]}/api/channels/{channel}/presence") as r:
                return sorted(c["replica"] for c in (await r.json())["clients"])

        assert await members() == ["h0", "h1"]
        procs.kill(reps.procs[0])  # no leave is ever sent for a's client
        seen: list[list[str]] = []

        async def gone() -> bool:
            seen.append(await members())
            return seen[-1] == ["h1"]

        for _ in range(100):
            if await gone():
                break
            await asyncio.sleep(0.1)
        assert seen[-1] == ["h1"], seen[-3:]
        await asyncio.sleep(1.0)  # b's own heartbeats keep it present past the ttl
        assert await members() == ["h1"]
    finally:
        await a.close()
        await b.close()


async def test_nats_restart_resumes_subscriptions_and_keeps_history(
    procs: Procs, http: aiohttp.ClientSession
) -> None:
    from tests.conftest import start_nats

    server = start_nats(procs)  # file storage: history survives the restart
    reps = start_hub_procs(procs, server.url, 2)
    channel = f"nrestart-{uuid.uuid4().hex[:8]}"
    a = await Peer("a").connect(reps.urls[0])
    late: list[Peer] = []
    try:
        ack = await a.subscribe(channel)
        for n in range(3):
            await http_publish(http, reps.urls[1], channel, n)
        await eventually(lambda: a.offsets(channel) == [1, 2, 3], what="before restart")

        server.stop()
        server.start()

        status = 0
        for _ in range(100):
            status, body = await http_publish(http, reps.urls[1], channel, "after")
            if status == 201:
                break
            await asyncio.sleep(0.1)
        assert status == 201 and body["epoch"] == ack["epoch"] and body["offset"] == 4
        await eventually(lambda: a.offsets(channel) == [1, 2, 3, 4], timeout=20, what="resumed")
        assert a.recoveries == []  # nothing was lost, so nothing to report

        b = await Peer("b").connect(reps.urls[0])
        late.append(b)
        back = await b.subscribe(channel, {"epoch": ack["epoch"], "offset": 1})
        assert back["recovered"] is True
        await eventually(lambda: b.offsets(channel) == [2, 3, 4], what="recovered from disk")
    finally:
        for p in [a, *late]:
            await p.close()


class FreezingProxy:
    """A TCP forwarder on loopback that can freeze its open connections: bytes stop flowing but
    nothing is closed, like a half-open connection after a network partition. New connections
    made after the freeze flow normally."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.frozen: set[int] = set()
        self.generation = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    def freeze_open_connections(self) -> None:
        self.frozen.add(self.generation)
        self.generation += 1

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        generation = self.generation
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    if generation in self.frozen:
                        continue  # swallow: the peer hears nothing, and nothing is closed
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_silent_dead_subscriber_is_detected_and_replaced(
    redis_server: object, procs: Procs, http: aiohttp.ClientSession
) -> None:
    """The subscriber's connection goes silent without closing (a half-open TCP connection):
    its missed PONGs get it replaced, and the messages published meanwhile are delivered."""
    direct_url = redis_server.url  # type: ignore[attr-defined]
    proxy = FreezingProxy(int(direct_url.rsplit(":", 1)[1]))
    await proxy.start()
    try:
        # in a thread: the proxy serves on this event loop while the hub connects through it
        (silent,) = (
            await asyncio.to_thread(
                start_hub_procs,
                procs,
                f"redis://127.0.0.1:{proxy.port}",
                1,
                "--health-interval",
                "0.5",
            )
        ).urls
        (direct,) = start_hub_procs(procs, direct_url, 1).urls
        channel = f"silent-{uuid.uuid4().hex[:8]}"
        a = await Peer("a").connect(silent)
        try:
            await a.subscribe(channel)
            await http_publish(http, direct, channel, 0)
            await eventually(lambda: a.offsets(channel) == [1], what="first")
            proxy.freeze_open_connections()
            for n in range(1, 4):
                status, _ = await http_publish(http, direct, channel, n)
                assert status == 201
            await eventually(lambda: len(a.messages[channel]) >= 4, timeout=20, what="healed")
            await asyncio.sleep(0.2)
            assert a.offsets(channel) == [1, 2, 3, 4]
        finally:
            await a.close()
    finally:
        await proxy.close()


class _ResendingBroker(RedisBroker):
    """The twin: what a retry after the write does (redis-py's pipelines retry that way)."""

    async def _pipeline(self, batch: list[Any]) -> list[Any]:
        results = await super()._pipeline(batch)
        if any(isinstance(r, redis_module._Unanswered) for r in results):
            self._publishing = None  # the failed connection was dropped: a new one
            return await super()._pipeline(batch)
        return results


@pytest.mark.parametrize("broker_class", [RedisBroker, _ResendingBroker])
async def test_publish_unanswered_after_its_write_is_not_sent_again(
    broker_class: type[RedisBroker], procs: Procs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis stops answering (SIGSTOP) after a publish was written: the publish fails with an
    error, and once Redis runs again the message is stored once. The twin sends the batch
    again on a new connection, and Redis, resumed, stores the one message twice."""
    monkeypatch.setattr(redis_module, "_ROUND_TRIP_TIMEOUT", 0.5)
    server = start_redis(procs)
    broker = broker_class(server.url, BrokerOptions())
    channel = f"unanswered-{uuid.uuid4().hex[:8]}"
    try:
        await broker.publish(channel, "first")  # the publish connection is up
        os.kill(server.proc.pid, signal.SIGSTOP)
        # resumed after the round trip's 0.5 s: the twin's second try is answered then
        resume = asyncio.get_running_loop().call_later(
            1.0, os.kill, server.proc.pid, signal.SIGCONT
        )
        try:
            if broker_class is RedisBroker:
                with pytest.raises(BrokerError, match="redis publish failed"):
                    await broker.publish(channel, "once")
            else:
                await broker.publish(channel, "once")
        finally:
            resume.cancel()
            os.kill(server.proc.pid, signal.SIGCONT)
        page = await eventually_page(broker, channel, lambda p: p.offset >= 2)
        stored = [m.data for m in page.messages]
        if broker_class is RedisBroker:
            assert stored == ["first", "once"]
        else:
            assert stored == ["first", "once", "once"]
    finally:
        await broker.close()


async def eventually_page(broker: RedisBroker, channel: str, done: Any) -> Any:
    """History of ``channel`` once ``done(page)``; Redis runs what it buffered when resumed."""
    for _ in range(100):
        page = await broker.history(channel, 0, 100)
        if done(page):
            await asyncio.sleep(0.2)  # a second copy, if one is coming, arrives with the first
            return await broker.history(channel, 0, 100)
        await asyncio.sleep(0.05)
    raise AssertionError(f"history of {channel} never reached the condition")
