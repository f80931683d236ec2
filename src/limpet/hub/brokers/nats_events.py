"""The channel-event queue in NATS JetStream: a stream of its own and a lease in a KV bucket.

    stream {PREFIX}_EVENTS   subject ``{prefix}.events``; max_msgs = the queue's limit with
                             DiscardPolicy.NEW: a full queue refuses new events (they are
                             counted as dropped), never loses old ones; delivered ones are purged
    kv {prefix}_events_lease key ``owner`` = the delivering replica, bucket TTL = the lease

Both are created on first use with the hub stream's replicas, so a NATS cluster keeps the queue
through the loss of one server, as it keeps the history.
"""

from __future__ import annotations

import contextlib
from typing import Any

from nats.errors import Error as NatsError
from nats.js import api
from nats.js.errors import APIError, KeyWrongLastSequenceError, NotFoundError

from limpet.errors import BrokerError
from limpet.hub.brokers.base import EventQueue


class NatsEventQueue(EventQueue):
    def __init__(self, js: Any, prefix: str, replicas: int) -> None:
        self.js = js
        self.prefix = prefix
        self.stream = f"{prefix.upper()}_EVENTS"
        self.subject = f"{prefix}.events"
        self.replicas = replicas
        self._ready = False
        self._kv: Any = None

    async def _ensure(self, limit: int) -> None:
        if self._ready:
            return
        config = api.StreamConfig(
            name=self.stream,
            subjects=[self.subject],
            max_msgs=limit,
            discard=api.DiscardPolicy.NEW,
            num_replicas=self.replicas,
        )
        try:
            await self.js.stream_info(self.stream)
        except NotFoundError:
            await self.js.add_stream(config)
        self._ready = True

    async def push(self, records: list[bytes], limit: int) -> int:
        taken = 0
        try:
            await self._ensure(limit)
            for record in records:
                try:
                    await self.js.publish(self.subject, record, stream=self.stream)
                except APIError as exc:
                    if exc.err_code == 10077 or "maximum messages" in str(exc.description):
                        return taken  # full (DiscardPolicy.NEW): the rest are dropped
                    raise
                taken += 1
        except (NatsError, OSError, TimeoutError) as exc:
            # the caller keeps every record and pushes them again: the ones already in are
            # repeated (the application drops their ids), none is lost
            raise BrokerError(f"nats events push failed after {taken}: {exc}") from exc
        return taken

    async def read(self, count: int) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        try:
            try:  # made by whichever replica pushed first
                state = (await self.js.stream_info(self.stream)).state
            except NotFoundError:
                return []
            last = min(state.last_seq, state.first_seq + count - 1)
            for seq in range(state.first_seq, last + 1) if state.messages else ():
                with contextlib.suppress(NotFoundError):  # purged meanwhile
                    raw = await self.js.get_msg(self.stream, seq=seq)
                    out.append((str(seq), raw.data or b""))
        except (NatsError, OSError, TimeoutError) as exc:
            raise BrokerError(f"nats events read failed: {exc}") from exc
        return out

    async def delete(self, ids: list[str]) -> None:
        if not ids:
            return
        try:  # delivered in order from the front: purge everything below the next one
            await self.js.purge_stream(self.stream, seq=max(int(i) for i in ids) + 1)
        except (NatsError, OSError, TimeoutError) as exc:
            raise BrokerError(f"nats events delete failed: {exc}") from exc

    async def lease(self, owner: str, ttl: float) -> bool:
        try:
            if self._kv is None:
                bucket = f"{self.prefix}_events_lease"
                try:
                    self._kv = await self.js.key_value(bucket)
                except (NotFoundError, NatsError):
                    self._kv = await self.js.create_key_value(
                        bucket=bucket, ttl=ttl, history=1, replicas=self.replicas
                    )
            try:
                await self._kv.create("owner", owner.encode())
                return True
            except KeyWrongLastSequenceError:
                pass
            entry = await self._kv.get("owner")
            if entry.value != owner.encode():
                return False
            await self._kv.update("owner", owner.encode(), last=entry.revision)
            return True
        except (KeyWrongLastSequenceError, NotFoundError):
            return False  # another replica changed or took it meanwhile
        except (NatsError, OSError, TimeoutError) as exc:
            raise BrokerError(f"nats events lease failed: {exc}") from exc
