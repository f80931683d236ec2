"""Issue 17: nothing an anonymous client does leaves channel state without a TTL in Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import redis

from tests.integration.hub.conftest import Peer, start_hub_procs
from tests.support.procs import Procs


async def test_reads_and_subscribes_leave_no_key_without_a_ttl(
    redis_server: Any, procs: Procs
) -> None:
    (url,) = start_hub_procs(procs, redis_server.url, 1).urls
    tag = uuid.uuid4().hex[:8]
    read = [f"read-{tag}-{i}" for i in range(20)]
    left = [f"left-{tag}-{i}" for i in range(5)]
    async with aiohttp.ClientSession() as http:
        for name in read:
            async with http.get(f"{url}/api/channels/{name}/messages?since=0") as resp:
                assert resp.status == 200
    peer = await Peer("p").connect(url)
    try:
        for name in left:
            assert "error" not in await peer.subscribe(name)
            assert await peer.call("unsubscribe", {"channel": name}) == {"channel": name}
    finally:
        await peer.close()
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        keys = list(client.scan_iter(match=f"limpet:{{*{tag}*}}:*", count=1000))
        metas = [k for k in keys if k.endswith(b":meta")]
        assert len(metas) == len(read) + len(left), keys  # the state exists...
        forever = [k for k in keys if client.pttl(k) == -1]
        assert forever == []  # ...and every key of it expires
    finally:
        client.close()


async def test_a_followed_channel_keeps_its_state_renewed(redis_server: Any, procs: Procs) -> None:
    """A quiet channel with a subscriber is renewed by the replica's heartbeat (its epoch must
    not expire under its clients); the twin, left by its last subscriber, is not."""
    # --check-interval 0: no position checks, whose history reads would renew it as well
    (url,) = start_hub_procs(
        procs, redis_server.url, 1, "--presence-ttl", "1", "--check-interval", "0"
    ).urls
    tag = uuid.uuid4().hex[:8]
    followed, left = f"followed-{tag}", f"left-{tag}"
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    peer = await Peer("p").connect(url)
    try:
        for name in (followed, left):
            assert "error" not in await peer.subscribe(name)
        assert await peer.call("unsubscribe", {"channel": left}) == {"channel": left}

        def pttl(name: str) -> int:
            return int(client.pttl(f"limpet:{{{name}}}:meta"))

        first = {name: pttl(name) for name in (followed, left)}
        # Renewed = one reading above the reading before it. Not "above the first reading": a
        # first reading taken the millisecond after a renewal is the most a renewal ever sets.
        deadline = time.monotonic() + 10
        before = first[followed]
        while (now := pttl(followed)) <= before:  # the heartbeat runs every 1/3 s
            assert time.monotonic() < deadline, "the followed channel's state was not renewed"
            before = now
            await asyncio.sleep(0.05)
        assert 0 < pttl(left) <= first[left]  # twin: counting down, not renewed
    finally:
        await peer.close()
        client.close()
