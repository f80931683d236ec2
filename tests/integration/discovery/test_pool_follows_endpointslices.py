"""EndpointSlice changes reach the proxy's pool and its cookie affinity: a terminating pod drains
(pinned sessions stay, new ones go elsewhere), a deleted pod's sessions repin. Each with its twin:
a pool that does not follow discovery keeps sending sessions to the dead pod."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from limpet.affinity.base import AffinityPolicy, Pick, PickReason, RequestFacts
from limpet.affinity.factory import build_policy
from limpet.affinity.spec import AffinitySpec
from limpet.discovery.base import Snapshot, feed_pool
from limpet.discovery.kubernetes import EndpointSliceDiscovery
from limpet.pool.pool import Pool
from tests.integration.discovery.fake_apiserver import (
    DRAINING,
    READY,
    FakeApiServer,
    endpoint_slice,
)

SPEC = AffinitySpec(mode="cookie", cookie_name="route")


class Session:
    """One browser: keeps the cookie the policy hands back."""

    def __init__(self, ip: str) -> None:
        self.ip = ip
        self.cookies: dict[str, str] = {}

    def request(self, policy: AffinityPolicy, pool: Pool) -> Pick:
        pick = policy.pick(RequestFacts(self.ip, cookies=dict(self.cookies)), pool.snapshot())
        if pick.set_cookie:
            name, _, rest = pick.set_cookie.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return pick

    def backend(self, policy: AffinityPolicy, pool: Pool) -> str:
        pick = self.request(policy, pool)
        assert pick.backend is not None, pick
        return pick.backend.id


async def test_pool_drains_and_repins_with_endpointslices(
    server: FakeApiServer, tmp_path: Path
) -> None:
    pods = [("pod-a", "127.0.0.10", READY), ("pod-b", "127.0.0.11", READY)]
    await server.put(endpoint_slice("chat", "chat-x", 3000, pods))
    config = tmp_path / "kubeconfig"
    config.write_text(server.kubeconfig())
    pool = Pool("chat", [])
    static = Pool("chat", [("pod-a", "127.0.0.10:3000"), ("pod-b", "127.0.0.11:3000")])  # the twin
    changes: asyncio.Queue[Snapshot] = asyncio.Queue()
    discovery = EndpointSliceDiscovery("default", "chat", kubeconfig=str(config), retry_delay=0.05)
    task = asyncio.create_task(feed_pool(discovery, pool, on_change=changes.put_nowait))
    try:
        await asyncio.wait_for(changes.get(), 10)
        assert {b.id for b in pool.backends()} == {"pod-a", "pod-b"}
        policy, static_policy = (
            build_policy(SPEC, secret=b"k" * 32),
            build_policy(SPEC, secret=b"k" * 32),
        )
        session, twin = Session("10.1.0.1"), Session("10.1.0.1")
        first = session.request(policy, pool)
        assert first.reason is PickReason.NEW and first.backend is not None
        pinned = first.backend.id
        twin_pinned = twin.backend(static_policy, static)

        # the pinned pod starts terminating: its session stays, new sessions avoid it
        await server.put(
            endpoint_slice(
                "chat",
                "chat-x",
                3000,
                [(p, ip, DRAINING if p == pinned else c) for p, ip, c in pods],
            )
        )
        await asyncio.wait_for(changes.get(), 10)
        assert session.backend(policy, pool) == pinned
        newcomers = {Session(f"10.2.0.{i}").backend(policy, pool) for i in range(20)}
        assert pinned not in newcomers
        # twin: a pool that does not follow discovery keeps handing the draining pod new sessions
        twin_newcomers = {Session(f"10.2.0.{i}").backend(static_policy, static) for i in range(20)}
        assert twin_pinned in twin_newcomers

        # the pod is gone: the session repins to the pod that is left
        await server.put(
            endpoint_slice("chat", "chat-x", 3000, [p for p in pods if p[0] != pinned])
        )
        await asyncio.wait_for(changes.get(), 10)
        moved = session.request(policy, pool)
        assert moved.reason is PickReason.REPINNED and moved.backend is not None
        assert moved.backend.id != pinned and moved.set_cookie
        assert session.request(policy, pool).reason is PickReason.PINNED  # the new pin holds
        # twin: without discovery the session is still sent to the pod that no longer exists
        assert twin.backend(static_policy, static) == twin_pinned
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
