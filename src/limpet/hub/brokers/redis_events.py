"""The channel-event queue in Redis: one stream shared by the replicas, and a lease key.

    {prefix}:{events}:queue   STREAM  d = an encoded ChannelEvent; entries deleted once delivered
    {prefix}:{events}:lease   STRING  the delivering replica's id, PX = the lease

Both keys share the hash tag ``{events}``, so a Redis Cluster keeps them on one slot. The push
script appends only while the stream holds fewer than the limit (never trims: trimming would drop
the oldest undelivered events silently); what does not fit is returned as dropped, to be counted.
"""

from __future__ import annotations

from typing import Any

from limpet.hub.brokers.base import EventQueue

# KEYS: queue; ARGV: limit, record...
PUSH = """
local room = tonumber(ARGV[1]) - redis.call('XLEN', KEYS[1])
local taken = 0
for i = 2, #ARGV do
  if taken >= room then break end
  redis.call('XADD', KEYS[1], '*', 'd', ARGV[i])
  taken = taken + 1
end
return taken
"""

# KEYS: lease; ARGV: owner, ttl ms
LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


class RedisEventQueue(EventQueue):
    def __init__(self, redis: Any, prefix: str, errors: Any) -> None:
        self.redis = redis
        self.queue = f"{prefix}:{{events}}:queue"
        self.lease_key = f"{prefix}:{{events}}:lease"
        self._push = redis.register_script(PUSH)
        self._lease = redis.register_script(LEASE)
        #: the broker's one translation of redis-py errors into BrokerError
        self._errors = errors

    async def push(self, records: list[bytes], limit: int) -> int:
        async with self._errors("events push"):
            return int(await self._push(keys=[self.queue], args=[limit, *records]))

    async def read(self, count: int) -> list[tuple[str, bytes]]:
        async with self._errors("events read"):
            entries = await self.redis.xrange(self.queue, "-", "+", count=count)
        return [(entry_id.decode(), fields[b"d"]) for entry_id, fields in entries]

    async def delete(self, ids: list[str]) -> None:
        if ids:
            async with self._errors("events delete"):
                await self.redis.xdel(self.queue, *ids)

    async def lease(self, owner: str, ttl: float) -> bool:
        async with self._errors("events lease"):
            return bool(await self._lease(keys=[self.lease_key], args=[owner, int(ttl * 1000)]))
