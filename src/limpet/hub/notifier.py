"""Channel events to the application (``--events-url``): at least once, in order, kept in the
broker while the application is away.

Each replica puts the events it sees in a small local buffer, which one task moves to the
broker's queue (``EventQueue``: a Redis stream, or the memory broker's deque) in order. One
replica at a time, the holder of the queue's lease, POSTs the oldest events in batches
(``{"events": [...]}``, signed like the hooks) and deletes them once the application answered
2xx; any other answer, or none, is retried with capped backoff, the batch unchanged, so the order
holds. A replica killed mid-delivery lets its lease expire and another one repeats the batch:
the application drops ids it has seen. Past the queue's limit (or the local buffer's, while the
broker is unreachable) new events are dropped, counted (``/healthz``) and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

import aiohttp

from limpet.errors import BrokerError
from limpet.hub.brokers.base import EventQueue, now_ms
from limpet.hub.events.records import (
    ChannelEvent,
    EventType,
    decode_event,
    encode_event,
    new_event_id,
)
from limpet.hub.events.retry import backoff
from limpet.hub.hooks.signing import signed_headers

log = logging.getLogger("limpet.hub.events")


class EventSink:
    """What the hub tells about its channels; this one tells nobody (no ``--events-url``)."""

    #: whether occupied/vacated are wanted: the hub then asks the broker, on each join and
    #: leave, whether the member was the first or the last (a read more on some brokers)
    occupancy = False

    def emit(self, type: EventType, channel: str, **fields: Any) -> None:
        """Record one event (never blocks, never raises)."""

    async def start(self) -> None:
        """Start background work."""

    async def close(self) -> None:
        """Stop background work."""

    def stats(self) -> dict[str, int]:
        return {}


@dataclass(frozen=True)
class NotifierOptions:
    #: events the broker's queue holds at most (undelivered); past it new ones are dropped
    limit: int = 100_000
    #: events a replica buffers while the broker is unreachable
    buffer: int = 10_000
    batch: int = 100
    #: seconds one delivery may take: under the lease, so that no other replica takes over
    #: (and delivers the same batch out of turn) while it is still on its way
    timeout: float = 2.0
    #: seconds the delivering replica's lease lasts (renewed on every round)
    lease: float = 5.0


class Notifier(EventSink):
    occupancy = True

    def __init__(
        self,
        queue: EventQueue,
        url: str,
        secret: bytes | None,
        replica: str,
        options: NotifierOptions,
    ) -> None:
        self.queue = queue
        self.url = url
        self.secret = secret
        self.replica = replica
        self.options = options
        self.owner = f"{replica}-{uuid.uuid4().hex[:8]}"
        self._local: deque[bytes] = deque()
        self._wake_push = asyncio.Event()
        self._wake_deliver = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self.counts = {"events_dropped": 0, "events_delivered": 0, "events_retries": 0}

    def __repr__(self) -> str:
        return f"Notifier(url={self.url!r}, buffered={len(self._local)}, counts={self.counts})"

    def stats(self) -> dict[str, int]:
        return {**self.counts, "events_buffered": len(self._local)}

    def emit(self, type: EventType, channel: str, **fields: Any) -> None:
        if len(self._local) >= self.options.buffer:
            self._dropped(1, "the local buffer is full (the broker is unreachable)")
            return
        event = ChannelEvent(
            new_event_id(), type, channel, now_ms(), replica=self.replica, **fields
        )
        try:
            self._local.append(encode_event(event))
        except (TypeError, ValueError, OverflowError) as exc:  # data the hub accepted encodes
            log.warning("event of %s not encodable (%s): dropped", channel, exc)
            self.counts["events_dropped"] += 1
            return
        self._wake_push.set()

    def _dropped(self, count: int, why: str) -> None:
        self.counts["events_dropped"] += count
        log.warning("%d channel event(s) dropped: %s (%d so far)", count, why,
                    self.counts["events_dropped"])  # fmt: skip

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.options.timeout)
        )
        self._tasks = [
            asyncio.create_task(self._push_loop()),
            asyncio.create_task(self._deliver_loop()),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._local:  # a last try, so a clean stop loses nothing the broker can take
            with contextlib.suppress(BrokerError, Exception):
                await asyncio.wait_for(self._push_some(), 2)
        if self._session is not None:
            await self._session.close()

    # --- local buffer -> the broker's queue -----------------------------------------------

    async def _push_loop(self) -> None:
        failures = 0
        while True:
            if not self._local:
                self._wake_push.clear()
                await self._wake_push.wait()
            try:
                await self._push_some()
                failures = 0
            except BrokerError as exc:
                failures += 1
                log.warning("queueing channel events failed (%s); retrying", exc)
                await asyncio.sleep(backoff(failures, jitter=random.random()))

    async def _push_some(self) -> None:
        records = list(self._local)[:500]
        taken = await self.queue.push(records, self.options.limit)
        for _ in records:
            self._local.popleft()
        if taken < len(records):
            self._dropped(len(records) - taken, f"the queue holds {self.options.limit}")
        self._wake_deliver.set()

    # --- the broker's queue -> the application --------------------------------------------

    async def _deliver_loop(self) -> None:
        failures = 0
        while True:
            try:
                if not await self.queue.lease(self.owner, self.options.lease):
                    await self._idle(self.options.lease / 2)
                    continue
                entries = await self.queue.read(self.options.batch)
            except BrokerError as exc:
                log.warning("reading channel events failed: %s", exc)
                await asyncio.sleep(1.0)
                continue
            if not entries:
                await self._idle(0.2)
                continue
            if await self._post(entries):
                failures = 0
                with contextlib.suppress(BrokerError):
                    await self.queue.delete([entry_id for entry_id, _ in entries])
                self.counts["events_delivered"] += len(entries)
            else:
                failures += 1
                self.counts["events_retries"] += 1
                await asyncio.sleep(backoff(failures, jitter=random.random()))

    async def _idle(self, seconds: float) -> None:
        self._wake_deliver.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake_deliver.wait(), seconds)

    async def _post(self, entries: list[tuple[str, bytes]]) -> bool:
        events = []
        for entry_id, raw in entries:
            event = decode_event(raw)
            if event is None:
                log.warning("channel event %s cannot be read: skipped", entry_id)
                continue
            events.append(raw)
        body = b'{"events":[' + b",".join(events) + b"]}"
        headers = {"Content-Type": "application/json"}
        headers.update(signed_headers(self.secret, body, time.time()))
        assert self._session is not None
        try:
            async with self._session.post(self.url, data=body, headers=headers) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    return True
                reason = f"HTTP {resp.status}"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        log.warning("delivering %d channel event(s) to %s failed (%s); retrying",
                    len(events), self.url, reason)  # fmt: skip
        return False
