"""The Redis Sentinel broker: the Redis broker on the master Sentinel names, found again after a
failover, with epochs fenced by the master's replication ID (see redis.py, ``_ENSURE_EPOCH``).

redis-py's Sentinel clients ask the Sentinels for the master's address on every new connection
and drop a connection that finds a replica (READONLY), so after a failover both the command pool
and the live subscriber's reconnect loop land on the promoted replica by themselves.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff, NoBackoff

from limpet.hub.brokers.base import BrokerOptions
from limpet.hub.brokers.redis import RedisBroker
from limpet.hub.brokers.urls import BrokerUrl


class RedisSentinelBroker(RedisBroker):
    kind = "redis-sentinel"
    fenced = True

    def __init__(self, spec: BrokerUrl, options: BrokerOptions) -> None:
        self.spec = spec
        self.sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(spec.nodes),
            sentinel_kwargs={"socket_connect_timeout": 2, "socket_timeout": 2},
            socket_connect_timeout=2,
            username=spec.username,
            password=spec.password,
            db=spec.db,
            ssl=spec.tls,
        )
        super().__init__(spec.url, options)

    def _commands(self) -> Any:
        return self.sentinel.master_for(
            self.spec.master,
            socket_timeout=5,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
            health_check_interval=10,
        )

    def _live_client(self) -> Any:
        return self.sentinel.master_for(self.spec.master, retry=Retry(NoBackoff(), 0))
