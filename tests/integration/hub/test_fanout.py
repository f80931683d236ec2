"""Three replicas on one broker: every subscriber gets every message once, in one order."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from tests.integration.hub.conftest import Peer, Replicas, eventually, http_publish


async def test_publish_on_every_replica_reaches_every_subscriber_once_in_order(
    replicas: Replicas, http: aiohttp.ClientSession
) -> None:
    channel = f"room-{uuid.uuid4().hex[:8]}"
    peers = [
        await Peer(f"p{i}").connect(url, ["polling"] if i == 0 else None)
        for i, url in enumerate(replicas.urls)
    ]
    try:
        acks = [await p.subscribe(channel) for p in peers]
        assert all(a["offset"] == 0 and a["recovered"] is False for a in acks), acks
        assert len({a["epoch"] for a in acks}) == 1

        async def socket_burst(peer: Peer) -> list[dict[str, object]]:
            return [
                await peer.call(
                    "publish", {"channel": channel, "data": {"from": peer.name, "n": n}}
                )
                for n in range(10)
            ]

        async def http_burst(url: str) -> list[tuple[int, dict[str, object]]]:
            return [await http_publish(http, url, channel, {"from": url, "n": n}) for n in range(5)]

        results = await asyncio.gather(
            *[socket_burst(p) for p in peers], *[http_burst(u) for u in replicas.urls]
        )
        socket_acks = [a for r in results[:3] for a in r]
        http_acks = [a for r in results[3:] for a in r]
        assert all(status == 201 for status, _ in http_acks), http_acks
        total = len(socket_acks) + len(http_acks)
        offsets = sorted([a["offset"] for a in socket_acks] + [b["offset"] for _, b in http_acks])
        assert offsets == list(range(1, total + 1)), "each publish got its own offset"

        await eventually(
            lambda: all(len(p.messages[channel]) >= total for p in peers), what="all delivered"
        )
        await asyncio.sleep(0.2)  # anything extra (a duplicate) would arrive now
        first = peers[0].messages[channel]
        for peer in peers:
            assert peer.offsets(channel) == list(range(1, total + 1)), peer.name
            assert peer.messages[channel] == first, "same order and content on every replica"
    finally:
        for p in peers:
            await p.close()


async def test_history_and_presence_over_http(
    replicas: Replicas, http: aiohttp.ClientSession
) -> None:
    channel = f"hist-{uuid.uuid4().hex[:8]}"
    peers = [await Peer(f"p{i}").connect(url) for i, url in enumerate(replicas.urls[:2])]
    # the twin: a subscriber that does not ask for presence events
    quiet = await Peer("quiet").connect(replicas.urls[2])
    try:
        await quiet.subscribe(channel)
        for p in peers:
            await p.subscribe(channel, presence=True)
        for n in range(5):
            await http_publish(http, replicas.urls[n % 3], channel, n)
        async with http.get(
            f"{replicas.urls[2]}/api/channels/{channel}/messages?since=2&limit=2"
        ) as r:
            assert r.status == 200
            page = await r.json()
        assert [m["offset"] for m in page["messages"]] == [3, 4]
        assert [m["data"] for m in page["messages"]] == [2, 3]
        async with http.get(f"{replicas.urls[2]}/api/channels/{channel}/presence") as r:
            assert r.status == 200
            clients = (await r.json())["clients"]
        replicas_seen = sorted(c["replica"] for c in clients)
        # (by the replica names themselves: a random client id may well contain "h0")
        assert replicas_seen in (["h0", "h1", "h2"], ["m0", "m1", "m2"])
        # presence join/leave events reach the subscribers that asked for them (opt-in)
        await eventually(lambda: len(peers[0].presence) == 1, what="join")
        await peers[1].close()
        await eventually(
            lambda: any(kind == "leave" for kind, _ in peers[0].presence), what="leave"
        )
        async with http.get(f"{replicas.urls[0]}/api/channels/{channel}/presence") as r:
            assert len((await r.json())["clients"]) == 2
        # ... and only to them: the quiet subscriber got every message and no presence event
        await eventually(lambda: quiet.offsets(channel) == [1, 2, 3, 4, 5], what="quiet messages")
        assert [kind for kind, _ in peers[0].presence] == ["join", "leave"]
        assert quiet.presence == []
    finally:
        for p in [*peers, quiet]:
            await p.close()


async def test_idempotent_publish_across_replicas(
    replicas: Replicas, http: aiohttp.ClientSession
) -> None:
    channel = f"idem-{uuid.uuid4().hex[:8]}"
    peer = await Peer("p").connect(replicas.urls[0])
    try:
        await peer.subscribe(channel)
        first = await peer.call(
            "publish", {"channel": channel, "data": "x", "idempotency_key": "k1"}
        )
        status, again = await http_publish(
            http, replicas.urls[1], channel, "x", idempotency_key="k1"
        )
        assert status == 201 and again["offset"] == first["offset"] and again.get("duplicate")
        _, other = await http_publish(http, replicas.urls[2], channel, "y", idempotency_key="k2")
        assert other["offset"] == first["offset"] + 1
        await eventually(lambda: len(peer.messages[channel]) >= 2, what="two messages")
        await asyncio.sleep(0.2)
        assert [m["data"] for m in peer.messages[channel]] == ["x", "y"]
    finally:
        await peer.close()


@pytest.mark.parametrize("gap_within_window", [True, False])
async def test_recovery_on_another_replica(
    replicas: Replicas, http: aiohttp.ClientSession, gap_within_window: bool
) -> None:
    """A client moves to another replica with `since` and gets exactly what it missed; when
    the channel's epoch is not the one it knew (the twin), it is told recovered: false and
    gets the current epoch from its first offset."""
    channel = f"rec-{uuid.uuid4().hex[:8]}"
    peer = await Peer("a").connect(replicas.urls[0])
    ack = await peer.subscribe(channel)
    for n in range(3):
        await http_publish(http, replicas.urls[1], channel, n)
    await eventually(lambda: len(peer.messages[channel]) == 3, what="first three")
    since = peer.position(channel, ack)
    await peer.close()
    for n in range(3, 7):
        await http_publish(http, replicas.urls[2], channel, n)
    moved = await Peer("a2").connect(replicas.urls[1])
    try:
        if not gap_within_window:
            since = {"epoch": "not-" + since["epoch"], "offset": since["offset"]}
        ack2 = await moved.subscribe(channel, since)
        assert ack2["recovered"] is gap_within_window
        assert ack2["offset"] == (7 if gap_within_window else 0)
        await http_publish(http, replicas.urls[0], channel, 7)
        want = [4, 5, 6, 7, 8] if gap_within_window else [1, 2, 3, 4, 5, 6, 7, 8]
        await eventually(lambda: moved.offsets(channel)[-1:] == [8], what="live after recovery")
        assert moved.offsets(channel) == want
    finally:
        await moved.close()


async def test_a_burst_of_publishes_from_one_socket_keeps_its_order(replicas: Replicas) -> None:
    """50 publishes emitted without waiting for their acks get offsets in emission order (on
    Redis they travel in pipelined batches, one round trip at a time)."""
    channel = f"burst-{uuid.uuid4().hex[:8]}"
    peer = await Peer("p").connect(replicas.urls[0])
    try:
        await peer.subscribe(channel)
        acks: list[dict[str, object]] = []
        done = asyncio.Event()

        def on_ack(ack: dict[str, object]) -> None:
            acks.append(ack)
            if len(acks) == 50:
                done.set()

        for n in range(50):
            await peer.sio.emit("publish", {"channel": channel, "data": n}, callback=on_ack)
        await asyncio.wait_for(done.wait(), 20)
        assert all("error" not in a for a in acks), acks
        await eventually(lambda: len(peer.messages[channel]) == 50, what="all delivered")
        assert [m["data"] for m in peer.messages[channel]] == list(range(50))
        assert peer.offsets(channel) == list(range(1, 51))
    finally:
        await peer.close()
