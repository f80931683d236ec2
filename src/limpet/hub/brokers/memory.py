"""The memory broker: one process. Several hubs in one process share a named backplane."""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import Any

from limpet.hub.brokers.base import Broker, BrokerOptions, EventQueue, now_ms
from limpet.hub.channels import ChannelLog, Envelope, HistoryPage, Position, new_epoch


class MemoryBackplane:
    """Channel logs, routing and presence of every hub attached to it (same event loop)."""

    def __init__(self) -> None:
        #: channel -> its log, least recently used first (so expired ones are found in front)
        self.logs: dict[str, ChannelLog] = {}
        #: channel -> when its state expires (ms), renewed by every use (``state_ttl``)
        self.expires: dict[str, int] = {}
        self.events = MemoryEventQueue()
        self.routes: dict[str, set[MemoryBroker]] = {}
        self.presence: dict[str, dict[str, tuple[dict[str, Any], int]]] = {}

    def log(self, channel: str, options: BrokerOptions) -> ChannelLog:
        now = now_ms()
        self._expire(now)
        log = self.logs.pop(channel, None)
        policy = options.history.for_channel(channel)
        if log is None:
            log = ChannelLog(channel, new_epoch(), policy, idempotency_ttl=options.idempotency_ttl)
        self.logs[channel] = log  # now the most recently used
        self.expires[channel] = now + int(options.state_ttl_for(policy.ttl) * 1000)
        return log

    def keep(self, channels: list[str], options: BrokerOptions) -> None:
        for channel in channels:
            if channel in self.logs:
                self.log(channel, options)

    def _expire(self, now: int) -> None:
        """Forget channels unused for their state TTL (the Redis broker's PEXPIRE on meta).
        TTLs differ by namespace, so this stops at the first unexpired channel in use order:
        a longer-lived one delays, never loses, the others' expiry."""
        while self.logs:
            channel = next(iter(self.logs))
            if self.expires.get(channel, 0) > now:
                return
            del self.logs[channel]
            self.expires.pop(channel, None)

    def fan_out(self, channel: str, record: Envelope) -> None:
        for broker in list(self.routes.get(channel, ())):
            broker.on_envelope(record)


_BACKPLANES: dict[str, MemoryBackplane] = {}


def backplane(name: str = "") -> MemoryBackplane:
    """The process-wide backplane called ``name`` (created on first use)."""
    return _BACKPLANES.setdefault(name, MemoryBackplane())


class MemoryBroker(Broker):
    kind = "memory"

    def __init__(self, options: BrokerOptions, *, backplane: str | MemoryBackplane = "") -> None:
        super().__init__(options)
        self.plane = backplane if isinstance(backplane, MemoryBackplane) else _named(backplane)
        self.channels: set[str] = set()

    def __repr__(self) -> str:
        return f"MemoryBroker(channels={len(self.channels)})"

    async def close(self) -> None:
        for channel in list(self.channels):
            await self.unsubscribe(channel)

    async def publish(
        self, channel: str, data: Any, *, idempotency_key: str | None = None
    ) -> tuple[Position, bool]:
        # No await between append and fan-out: offsets and delivery order are one sequence.
        message, duplicate = self.plane.log(channel, self.options).append(
            data, now_ms=now_ms(), idempotency_key=idempotency_key
        )
        if not duplicate:
            self.plane.fan_out(channel, message)
        return Position(message.epoch, message.offset), duplicate

    async def history(self, channel: str, since: int | None, limit: int) -> HistoryPage:
        return self.plane.log(channel, self.options).page(since, limit, now_ms=now_ms())

    async def subscribe(self, channel: str) -> None:
        self.channels.add(channel)
        self.plane.routes.setdefault(channel, set()).add(self)

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        routes = self.plane.routes.get(channel)
        if routes is not None:
            routes.discard(self)
            if not routes:
                del self.plane.routes[channel]

    async def keep(self, channels: list[str]) -> None:
        self.plane.keep(channels, self.options)

    async def announce(self, channel: str, record: Envelope) -> None:
        self.plane.fan_out(channel, record)

    async def presence_touch(self, channel: str, members: dict[str, dict[str, Any]]) -> None:
        expires = now_ms() + int(self.options.presence_ttl * 1000)
        table = self.plane.presence.setdefault(channel, {})
        for member, info in members.items():
            table[member] = (info, expires)

    async def presence_remove(self, channel: str, member: str) -> None:
        table = self.plane.presence.get(channel)
        if table is not None:
            table.pop(member, None)
            if not table:  # nothing of a left channel stays behind
                del self.plane.presence[channel]

    async def presence_join(self, channel: str, member: str, info: dict[str, Any]) -> bool:
        await self.presence(channel)  # expired members first
        new = member not in self.plane.presence.get(channel, {})
        await self.presence_touch(channel, {member: info})
        return new and len(self.plane.presence[channel]) == 1

    async def presence_leave(self, channel: str, member: str) -> bool:
        await self.presence(channel)
        table = self.plane.presence.get(channel, {})
        last = member in table and len(table) == 1
        await self.presence_remove(channel, member)
        return last

    def event_queue(self) -> EventQueue:
        return self.plane.events

    async def presence(self, channel: str) -> list[dict[str, Any]]:
        now = now_ms()
        table = self.plane.presence.get(channel, {})
        for member in [m for m, (_, exp) in table.items() if exp <= now]:
            del table[member]
        return [{"id": member, **info} for member, (info, _) in sorted(table.items())]


def _named(name: str) -> MemoryBackplane:
    return backplane(name)


class MemoryEventQueue(EventQueue):
    """The events of one process: lost with it (the twin of the brokers' persistent queue)."""

    def __init__(self) -> None:
        self._entries: deque[tuple[str, bytes]] = deque()
        self._ids = itertools.count(1)
        self._owner: tuple[str, float] | None = None

    async def push(self, records: list[bytes], limit: int) -> int:
        taken = max(0, min(len(records), limit - len(self._entries)))
        for record in records[:taken]:
            self._entries.append((str(next(self._ids)), record))
        return taken

    async def read(self, count: int) -> list[tuple[str, bytes]]:
        return list(itertools.islice(self._entries, count))

    async def delete(self, ids: list[str]) -> None:
        gone = set(ids)
        while self._entries and self._entries[0][0] in gone:
            self._entries.popleft()

    async def lease(self, owner: str, ttl: float) -> bool:
        now = time.monotonic()
        if self._owner is None or self._owner[0] == owner or self._owner[1] <= now:
            self._owner = (owner, now + ttl)
            return True
        return False
