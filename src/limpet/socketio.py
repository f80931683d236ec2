"""Drop-in client manager for existing python-socketio servers: ordered, recoverable cross-replica
delivery on a Redis Stream.

python-socketio's ``AsyncRedisManager`` uses pub/sub: a replica whose connection blips misses
whatever was broadcast meanwhile, and records are pickles. ``StreamManager`` appends every
cross-replica operation (emit, room changes, disconnects, callbacks) to one Redis Stream as a
versioned JSON record, and each replica reads it with ``XREAD`` from the last entry it handled, so:

* every replica applies the operations in the one stream order;
* after a Redis connection error the reader resumes from its last entry id: nothing published in
  the meantime is lost, as long as the stream (``maxlen`` entries) still holds it;
* nothing is ever unpickled.

Usage::

    mgr = limpet.socketio.StreamManager("redis://127.0.0.1:6379/0")
    sio = socketio.AsyncServer(client_manager=mgr, async_mode="aiohttp")

Payloads must be JSON-serialisable (binary attachments are not carried).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from socketio.async_pubsub_manager import AsyncPubSubManager

log = logging.getLogger("limpet.socketio")
RECORD_VERSION = 1


class ManagerRecord(msgspec.Struct, frozen=True):
    """One cross-replica operation of python-socketio's pub/sub manager, versioned."""

    op: dict[str, Any]
    v: int = RECORD_VERSION


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ManagerRecord)


class StreamManager(AsyncPubSubManager):  # type: ignore[misc]
    """An ``AsyncPubSubManager`` over a Redis Stream (``limpet:sio:{channel}``)."""

    name = "limpet-stream"

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        channel: str = "socketio",
        write_only: bool = False,
        logger: Any = None,
        *,
        maxlen: int = 10_000,
        block_ms: int = 1000,
        redis_options: dict[str, Any] | None = None,
    ) -> None:
        import redis.asyncio as aioredis

        super().__init__(channel=channel, write_only=write_only, logger=logger)
        self.url = url
        self.stream = f"limpet:sio:{{{channel}}}"
        self.maxlen = maxlen
        self.block_ms = block_ms
        self.redis: Any = aioredis.from_url(url, **(redis_options or {}))
        self.last_id: bytes | None = None
        self.reconnects = 0

    def __repr__(self) -> str:
        return f"StreamManager(stream={self.stream!r}, last_id={self.last_id!r}, reconnects={self.reconnects})"

    async def _publish(self, data: Any) -> None:
        from redis.exceptions import RedisError

        record = _encoder.encode(ManagerRecord(dict(data)))
        for attempt in range(3):
            try:
                await self.redis.xadd(
                    self.stream, {"r": record}, maxlen=self.maxlen, approximate=True
                )
                return
            except (RedisError, OSError):
                if attempt == 2:
                    raise
                await asyncio.sleep(0.1 * (attempt + 1))

    async def _listen(self) -> AsyncIterator[dict[str, Any]]:
        from redis.exceptions import RedisError

        backoff = 0.05
        while True:
            try:
                if self.last_id is None:
                    # start at the end: operations from before this replica started are not ours
                    newest = await self.redis.xrevrange(self.stream, count=1)
                    self.last_id = newest[0][0] if newest else b"0-0"
                reply = await self.redis.xread(
                    {self.stream: self.last_id}, block=self.block_ms, count=100
                )
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.reconnects += 1
                log.warning("stream read failed (%s); resuming from %r", exc, self.last_id)
                await asyncio.sleep(backoff)
                backoff = min(1.0, backoff * 2)
                continue
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    self.last_id = entry_id
                    try:
                        record = _decoder.decode(fields[b"r"])
                    except (KeyError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                        log.warning("skipping an undecodable record %r: %s", entry_id, exc)
                        continue
                    if record.v != RECORD_VERSION:
                        log.warning("skipping a record of version %s", record.v)
                        continue
                    yield record.op
