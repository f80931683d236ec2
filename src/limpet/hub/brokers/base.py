"""The broker interface every backplane implements (memory, Redis, NATS).

A broker assigns offsets (atomically, so every replica sees one order per channel), keeps bounded
history, routes live messages only to replicas that subscribed to a channel, and keeps presence
with TTL heartbeats so a crashed replica's clients vanish within ``presence_ttl``.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from limpet.errors import BrokerError
from limpet.hub.channels import Envelope, HistoryPage, HistoryRules, Position
from limpet.hub.channels.payload import MAX_DEPTH


@dataclass(frozen=True)
class BrokerOptions:
    history: HistoryRules = field(default_factory=HistoryRules)
    idempotency_ttl: float = 60.0
    presence_ttl: float = 15.0
    #: the live stream is checked this often (ping); a silent subscriber is replaced after 2x
    health_interval: float = 2.0
    #: key / stream / subject prefix, so several hubs can share one Redis or NATS
    prefix: str = "limpet"
    #: connections to the broker per replica (Redis); more requests wait for one, up to
    #: ``pool_wait`` seconds, then fail with BrokerError (an error ack)
    pool_size: int = 32
    pool_wait: float = 10.0
    #: a CA file (PEM) that TLS broker URLs (rediss://, rediss+cluster://, tls://) are
    #: verified against instead of the system's CAs: a private CA, as in-cluster Redis has
    tls_ca: str | None = None
    #: seconds a channel's state (epoch and offset) outlives its last use: at least its
    #: history TTL, the idempotency window and this floor; every use renews it
    state_ttl: float = 3600.0

    def state_ttl_for(self, history_ttl: float) -> float:
        return max(self.state_ttl, history_ttl, self.idempotency_ttl, 4 * self.presence_ttl)

    #: the hub's limits on message data (``--max-depth``, ``--max-payload``), also applied to
    #: what is read from the broker: a record past them is not parsed (announced as unreadable)
    max_depth: int = MAX_DEPTH
    max_payload: int = 64 * 1024


def now_ms() -> int:
    return int(time.time() * 1000)


#: presence members: client id -> its info
Members = dict[str, dict[str, Any]]


class JoinRead(NamedTuple):
    """What ``Broker.join_and_read`` did: the history page, whether the presence was written,
    and the presence or announce failure (logged by the hub, not raised)."""

    page: HistoryPage
    joined: bool
    failure: BrokerError | None


class Broker(abc.ABC):
    """One hub replica's connection to the backplane."""

    kind = "abstract"

    def __init__(self, options: BrokerOptions) -> None:
        self.options = options
        #: called for each live record of a subscribed channel, in offset order per channel
        self.on_envelope: Callable[[Envelope], None] = lambda envelope: None
        #: called after the live stream may have lost records (reconnect): re-fetch history
        self.on_resync: Callable[[], None] = lambda: None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect; raise limpet.errors.BrokerError if the broker cannot be reached."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Disconnect and stop background tasks."""

    @abc.abstractmethod
    async def publish(
        self, channel: str, data: Any, *, idempotency_key: str | None = None
    ) -> tuple[Position, bool]:
        """Store ``data`` at the channel's next offset and fan it out; (position, duplicate)."""

    def publish_soon(
        self, channel: str, data: Any, *, idempotency_key: str | None = None
    ) -> asyncio.Future[tuple[Position, bool]]:
        """``publish`` started now, its outcome as a future (the hub acks a socket.io publish
        from its callback, without a task per event). This default runs ``publish`` as a
        task; a broker that queues publishes itself returns its own future."""
        return asyncio.ensure_future(self.publish(channel, data, idempotency_key=idempotency_key))

    @abc.abstractmethod
    async def history(self, channel: str, since: int | None, limit: int) -> HistoryPage:
        """The channel's position and retained messages with offset > since (none if since is None)."""

    @abc.abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Start receiving the channel's live records on this replica."""

    @abc.abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving the channel's live records on this replica."""

    @abc.abstractmethod
    async def announce(self, channel: str, record: Envelope) -> None:
        """Fan out an ephemeral record (presence join/leave) to the channel's subscribers."""

    async def keep(self, channels: list[str]) -> None:  # noqa: B027 - optional hook
        """Renew the state TTL of ``channels`` (subscribed here): their epoch and offset must
        not expire while clients follow them, however quiet they are."""

    @abc.abstractmethod
    async def presence_touch(self, channel: str, members: dict[str, dict[str, Any]]) -> None:
        """Add or refresh members (id -> info) of the channel's presence for ``presence_ttl``."""

    @abc.abstractmethod
    async def presence_remove(self, channel: str, member: str) -> None:
        """Remove one member of the channel's presence now."""

    async def join_and_read(
        self, channel: str, members: Members, record: Envelope, since: int | None, limit: int
    ) -> JoinRead:
        """A subscriber's broker work once the channel is routed here, in this order: its
        presence (``presence_touch``), its join ``record`` (``announce``), then the ``history``
        read. The presence part is not part of delivery: its failure is returned (the
        heartbeat writes presence again); the history read's failure is raised. A broker that
        can do all three in one round trip overrides this."""
        joined = False
        failure: BrokerError | None = None
        try:
            await self.presence_touch(channel, members)
            joined = True
            await self.announce(channel, record)
        except BrokerError as exc:
            failure = exc
        return JoinRead(await self.history(channel, since, limit), joined, failure)

    async def presence_join(self, channel: str, member: str, info: dict[str, Any]) -> bool:
        """Add ``member``; True when it is the channel's first (``occupied``). Brokers that can
        tell atomically override this; this default reads the presence after writing it."""
        await self.presence_touch(channel, {member: info})
        members = await self.presence(channel)
        return [m.get("id") for m in members] == [member]

    async def presence_leave(self, channel: str, member: str) -> bool:
        """Remove ``member``; True when it was the channel's last (``vacated``)."""
        before = {m.get("id") for m in await self.presence(channel)}
        await self.presence_remove(channel, member)
        return before == {member}

    def event_queue(self) -> EventQueue:
        """The bounded queue channel events wait in for delivery (shared by the replicas)."""
        raise BrokerError(f"the {self.kind} broker keeps no channel events")

    @abc.abstractmethod
    async def presence(self, channel: str) -> list[dict[str, Any]]:
        """The channel's live members: [{"id": ..., **info}], expired ones left out."""


class EventQueue(abc.ABC):
    """Channel events waiting for the application, in the broker so that a replica's crash
    loses none. One replica at a time delivers (it holds the lease); entries are deleted once
    the application took them, so a delivery cut short is repeated (at least once)."""

    @abc.abstractmethod
    async def push(self, records: list[bytes], limit: int) -> int:
        """Append ``records`` in order while the queue holds fewer than ``limit``; returns how
        many were taken (the rest are dropped: the caller counts and logs them). BrokerError
        when the broker could not be told: the caller pushes all of them again later."""

    @abc.abstractmethod
    async def read(self, count: int) -> list[tuple[str, bytes]]:
        """The oldest ``count`` entries: (entry id, record)."""

    @abc.abstractmethod
    async def delete(self, ids: list[str]) -> None:
        """Forget delivered entries."""

    @abc.abstractmethod
    async def lease(self, owner: str, ttl: float) -> bool:
        """Take or renew the delivery lease for ``ttl`` seconds; False: another replica has it."""
