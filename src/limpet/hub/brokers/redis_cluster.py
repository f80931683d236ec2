"""The Redis Cluster broker: the Redis broker's scripts on redis-py's asyncio cluster client, live
records on sharded pub/sub (SPUBLISH/SSUBSCRIBE, Redis 7), epochs fenced across failovers.

A channel's keys share the hash tag ``{<channel>}`` (see redis.py), so its scripts, its stream and
its shard channel live on one slot: a message travels only within its shard, and the cluster
client follows MOVED/ASK and refreshes its slot table for scripts and commands.

The live subscriber is written here rather than taken from redis-py: redis-py 8's asyncio
``ClusterPubSub`` does support ``ssubscribe``/``get_sharded_message`` and moves subscriptions to a
slot's new owner by itself, but it does so silently, and the hub must learn of every moment the
live stream may have had a hole, to re-read history. So: one plain redis-py ``PubSub`` per master
(planned from the cluster client's slot table), each PINGed as in redis.py; any error, an
unsolicited SUNSUBSCRIBE (the slot moved), or a channel whose slot now belongs to a master with
no link, tears every link down, refreshes the slot table, re-subscribes and re-syncs the hub.
A replica promoted after its master died is picked up at that refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError

from limpet.errors import BrokerError
from limpet.hub.brokers.base import BrokerOptions
from limpet.hub.brokers.redis import _CONTROL, RedisBroker, tls_options
from limpet.hub.brokers.urls import BrokerUrl

log = logging.getLogger("limpet.hub.redis")

#: what Redis answers a client without (or with a wrong) password; redis-py's cluster client
#: folds it into "cannot be connected", so the hub looks for it to say what is wrong
_LOGIN_REFUSED = ("invalid username-password", "NOAUTH", "HELLO must be called", "WRONGPASS")


class RedisClusterBroker(RedisBroker):
    kind = "redis-cluster"
    sharded = True
    fenced = True
    migrates = True
    # a subscribe's presence, announce and history read stay three calls: redis-py's cluster
    # transactions fail on our loop during a failover (see _transaction)
    pipelined_joins = False

    def __init__(self, spec: BrokerUrl, options: BrokerOptions) -> None:
        self.spec = spec
        super().__init__(spec.url, options)
        #: master node name -> its live PubSub (only while the listener is connected)
        self._links: dict[str, Any] = {}
        #: the listener's own slot table (slot -> master name), read when the links were made
        self._owners: dict[int, str] = {}
        self._seeds = [ClusterNode(host, port) for host, port in spec.nodes]
        self._stale = asyncio.Event()
        #: background tasks closing old links
        self._closers: set[asyncio.Task[None]] = set()

    def _client_kwargs(self) -> dict[str, Any]:
        return {
            "username": self.spec.username,
            "password": self.spec.password,
            "ssl": self.spec.tls,
            **tls_options(self.options, self.spec.tls),
        }

    def _commands(self) -> Any:
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in self.spec.nodes],
            # keep serving the shards that are up while one fails over
            require_full_coverage=False,
            socket_connect_timeout=2,
            socket_timeout=5,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
            **self._client_kwargs(),
        )

    async def start(self) -> None:
        try:
            await super().start()
        except BrokerError as exc:
            seeds = ", ".join(f"{h}:{p}" for h, p in self.spec.nodes)
            reason = str(exc.__cause__ or exc)
            if any(sign in reason for sign in _LOGIN_REFUSED):
                given = "a wrong password" if self.spec.password else "no password"
                raise BrokerError(
                    f"the Redis Cluster at {seeds} refused the login ({given}; the URL form is "
                    "redis+cluster://[USER]:PASSWORD@HOST:PORT,...)"
                ) from exc
            raise BrokerError(f"cannot reach the Redis Cluster at {seeds}: {reason}") from exc

    def _transaction(self) -> Any:
        # redis-py 8's asyncio cluster transactions run commands through asyncio.run() in a
        # thread when the cluster re-initialises (a failover), which fails on our loop: presence
        # is refreshed by heartbeats anyway, so a plain single-slot pipeline is enough.
        return self.redis.pipeline()

    async def _pipeline(
        self, batch: list[tuple[list[str], list[Any], asyncio.Future[Any]]]
    ) -> list[Any]:
        """The batch's publish scripts as one pipeline per master, the masters in parallel.

        A channel's keys share one slot, so its publishes stay in call order within its
        master's pipeline. One pipeline per master rather than one for the batch: a master
        that fails (a failover) fails only its own publishes, and a pipeline that raised may
        have run on the other masters, so nothing is retried across them.
        """
        groups: dict[str, list[int]] = {}
        for i, (keys, _, _) in enumerate(batch):
            try:
                owner = self.redis.get_node_from_key(keys[0]).name
            except Exception:  # slot not covered (failing over): its own pipeline says so
                owner = ""
            groups.setdefault(owner, []).append(i)
        results: list[Any] = [None] * len(batch)

        async def send(indices: list[int]) -> None:
            # EVALSHA as a raw command: redis-py's cluster pipeline refuses its evalsha()
            # helper ("blocked when running redis in cluster mode"), not the command
            try:
                pipe = self.redis.pipeline(transaction=False)
                for i in indices:
                    keys, args, _ = batch[i]
                    pipe.execute_command("EVALSHA", self._publish.sha, len(keys), *keys, *args)
                answers = list(await pipe.execute(raise_on_error=False))
            except Exception as exc:  # every publish of it fails, none is left waiting forever
                answers = [exc] * len(indices)
            for i, answer in zip(indices, answers, strict=True):
                results[i] = answer

        await asyncio.gather(*(send(indices) for indices in groups.values()))
        return results

    def _node_of(self, channel: str) -> str | None:
        """The master the links were planned with for the channel's slot (None: not covered)."""
        return self._owners.get(key_slot(self._live(channel).encode()))

    async def _topology(self) -> tuple[dict[int, str], list[ClusterNode]]:
        """A fresh slot table, read by a client of its own: the command client refreshes its
        table by itself, and two refreshes of one client at once are not safe."""
        probe = RedisCluster(
            startup_nodes=list(self._seeds),
            require_full_coverage=False,
            socket_connect_timeout=2,
            socket_timeout=2,
            **self._client_kwargs(),
        )
        try:
            await probe.initialize()
            owners = {
                slot: nodes[0].name
                for slot, nodes in probe.nodes_manager.slots_cache.items()
                if nodes
            }
            primaries = probe.get_primaries()
            known = {(n.host, int(n.port)) for n in self._seeds}
            self._seeds += [
                ClusterNode(n.host, n.port)
                for n in probe.get_nodes()
                if (n.host, int(n.port)) not in known
            ]
            return owners, primaries
        finally:
            with contextlib.suppress(Exception):
                await probe.aclose()

    async def subscribe(self, channel: str) -> None:
        self.channels.add(channel)
        if not self._links:
            return  # the listener subscribes every channel when it (re)connects
        node = self._node_of(channel)
        pubsub = self._links.get(node) if node else None
        if pubsub is None:
            self._stale.set()  # the slot table changed under us: start over, then re-sync
            return
        waiter = self._pending.get(channel)
        if waiter is None or waiter.done():
            waiter = self._pending[channel] = asyncio.get_running_loop().create_future()
        try:
            await pubsub.ssubscribe(self._live(channel))
            await asyncio.wait_for(asyncio.shield(waiter), 5)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("subscribe %s deferred to reconnect: %s", channel, exc)
            self._stale.set()

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        self._pending.pop(channel, None)
        node = self._node_of(channel)
        pubsub = self._links.get(node) if node else None
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.sunsubscribe(self._live(channel))

    async def _connect_links(self, clients: list[Any]) -> tuple[dict[int, str], dict[str, Any]]:
        """Read the slot table; connect one PubSub per master and subscribe its channels."""
        links: dict[str, Any] = {}
        owners, primaries = await self._topology()
        plan: dict[str, tuple[ClusterNode, list[str]]] = {
            node.name: (node, []) for node in primaries
        }
        for channel in self.channels:
            name = owners.get(key_slot(self._live(channel).encode()))
            if name is None or name not in plan:
                raise ConnectionError(f"no master serves channel {channel!r} yet")
            plan[name][1].append(self._live(channel))
        for name, (node, keys) in plan.items():
            client = aioredis.Redis(
                host=node.host,
                port=int(node.port),
                socket_connect_timeout=2,
                retry=Retry(NoBackoff(), 0),
                **self._client_kwargs(),
            )
            clients.append(client)
            pubsub = client.pubsub()
            # the control channel (plain pub/sub) keeps a link subscribed, so PINGs
            # get pub/sub PONGs, even when no channel of this shard is wanted
            await pubsub.subscribe(f"{self.options.prefix}:{_CONTROL}")
            if keys:
                await pubsub.ssubscribe(*keys)
            links[name] = pubsub
        return owners, links

    async def _listen(self) -> None:
        """Own one live link per master; on any failure rebuild them all from a fresh slot table."""
        backoff = 0.05
        first = True
        while not self._closing:
            clients: list[Any] = []
            links: dict[str, Any] = {}
            readers: list[asyncio.Task[None]] = []
            try:
                # bounded: a node that accepts connections but does not answer (stopped,
                # partitioned) must not keep the listener from trying again
                # (in a task of its own: redis-py's cluster client may swallow a cancellation)
                connecting = asyncio.create_task(self._connect_links(clients))
                await asyncio.wait({connecting}, timeout=2 * self.options.health_interval + 3)
                if not connecting.done():
                    connecting.cancel()
                    raise TimeoutError("the cluster did not answer in time")
                owners, links = connecting.result()
                self._stale.clear()
                self._owners = owners
                self._links = links
                self._pubsub = next(iter(links.values()), None)
                self._connected.set()
                resync = not first
                if resync:
                    self.reconnects += 1
                    log.warning("redis cluster subscribers reconnected; re-syncing subscriptions")
                first = False
                backoff = 0.05
                countdown = _Countdown(set(links), self.on_resync if resync else None)
                readers = [
                    asyncio.create_task(self._read(pubsub, ready=partial(countdown.done, name)))
                    for name, pubsub in links.items()
                ]
                stale = asyncio.create_task(self._stale.wait())
                done, _ = await asyncio.wait([*readers, stale], return_when=asyncio.FIRST_COMPLETED)
                stale.cancel()
                for task in done:
                    if task is not stale:
                        task.result()  # raises the reader's error
                raise ConnectionError("the cluster's slot table changed")
            except asyncio.CancelledError:
                raise
            except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
                log.warning("redis cluster subscriber lost (%s); reconnecting", exc)
            except Exception:
                log.exception("redis cluster subscriber failed; reconnecting")
            finally:
                self._links = {}
                self._pubsub = None
                self._connected.clear()
                for task in readers:
                    task.cancel()
                # in the background: closing a connection to a dead node can hang in redis-py
                # (and ignore cancellation), and must not keep the listener from reconnecting
                closing = asyncio.create_task(_close_all(readers, links, clients))
                self._closers.add(closing)
                closing.add_done_callback(self._closers.discard)
            if not self._closing:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)


async def _close_all(
    readers: list[asyncio.Task[None]], links: dict[str, Any], clients: list[Any]
) -> None:
    """Close one generation of links, each step bounded."""
    if readers:
        await asyncio.wait(readers, timeout=2)
    async with asyncio.timeout(5):
        await _close_links(links, clients)


async def _close_links(links: dict[str, Any], clients: list[Any]) -> None:
    for pubsub in links.values():
        with contextlib.suppress(Exception):
            await pubsub.aclose()
    for client in clients:
        with contextlib.suppress(Exception):
            await client.aclose()


class _Countdown:
    """Calls ``then`` once every named link has had its first PONG (all re-subscribed)."""

    def __init__(self, waiting: set[str], then: Callable[[], None] | None) -> None:
        self.waiting, self.then = waiting, then

    def done(self, name: str) -> None:
        self.waiting.discard(name)
        if not self.waiting and self.then is not None:
            then, self.then = self.then, None
            then()
