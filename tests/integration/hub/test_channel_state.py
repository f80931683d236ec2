"""Issue 17: nothing an anonymous client does leaves channel state without a TTL in Redis."""

from __future__ import annotations

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
