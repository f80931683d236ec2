"""The Redis Sentinel broker: the Redis broker on the master Sentinel names, found again after a
failover, with epochs fenced by the master's replication ID (see redis.py, ``_ENSURE_EPOCH``).

redis-py's Sentinel clients ask the Sentinels for the master's address on every new connection
and drop a connection that finds a replica (READONLY), so after a failover both the command pool
and the live subscriber's reconnect loop land on the promoted replica by themselves.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import RedisError

from limpet.errors import BrokerError
from limpet.hub.brokers.base import BrokerOptions
from limpet.hub.brokers.redis import PUBLISH_IDLE_CHECK, RedisBroker, tls_options
from limpet.hub.brokers.urls import BrokerUrl


class RedisSentinelBroker(RedisBroker):
    kind = "redis-sentinel"
    fenced = True

    def __init__(self, spec: BrokerUrl, options: BrokerOptions) -> None:
        self.spec = spec
        self.sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
            list(spec.nodes),
            sentinel_kwargs={
                "socket_connect_timeout": 2,
                "socket_timeout": 2,
                "retry": Retry(NoBackoff(), 1),
            },
            socket_connect_timeout=2,
            username=spec.username,
            password=spec.password,
            db=spec.db,
            ssl=spec.tls,
            **tls_options(options, spec.tls),
        )
        super().__init__(spec.url, options)

    def _commands(self) -> Any:
        return self.sentinel.master_for(
            self.spec.master,
            socket_timeout=5,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
            health_check_interval=10,
        )

    def _publish_client(self) -> Any:
        return self.sentinel.master_for(
            self.spec.master, socket_timeout=None, health_check_interval=PUBLISH_IDLE_CHECK
        )

    def _live_client(self) -> Any:
        return self.sentinel.master_for(self.spec.master, retry=Retry(NoBackoff(), 0))

    async def start(self) -> None:
        """Ask the Sentinels first, so a wrong address or master name is one clear line now
        rather than a connection retried in silence."""
        unreachable: list[str] = []
        for (host, port), sentinel in zip(self.spec.nodes, self.sentinel.sentinels, strict=True):
            try:
                addr = await asyncio.wait_for(
                    sentinel.sentinel_get_master_addr_by_name(self.spec.master), 5
                )
            except (RedisError, OSError, TimeoutError) as exc:
                unreachable.append(f"{host}:{port} ({_reason(exc)})")
                continue
            if addr:
                return await super().start()
        where = ", ".join(f"{h}:{p}" for h, p in self.spec.nodes)
        if len(unreachable) == len(self.spec.nodes):
            raise BrokerError(f"cannot reach any Sentinel: {', '.join(unreachable)}")
        raise BrokerError(
            f"the Sentinels at {where} know no master named {self.spec.master!r}"
            + (f" (unreachable: {', '.join(unreachable)})" if unreachable else "")
        )


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return (
        "connection refused" if "refused" in text.lower() or "111" in text else text or "timed out"
    )
