"""Brokers: the backplane hub replicas share. ``open_broker`` picks one from a URL.

The package itself imports only the sans-IO URL parser, so ``limpet k8s render --broker`` and
``limpet up`` can check a broker URL without loading asyncio or a broker client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from limpet.errors import require
from limpet.hub.brokers.urls import BrokerUrl, parse_broker_url

if TYPE_CHECKING:
    from limpet.hub.brokers.base import Broker, BrokerOptions


def open_broker(url: str, options: BrokerOptions, *, nats_replicas: int | None = None) -> Broker:
    """A broker for any URL form of ``limpet.hub.brokers.urls`` (a UsageError for others)."""
    spec = parse_broker_url(url)
    if spec.kind == "memory":
        from limpet.hub.brokers.memory import MemoryBroker

        return MemoryBroker(options, backplane=spec.backplane)
    if spec.kind.startswith("redis"):
        require("redis.asyncio", feature="the redis broker", extra="redis")
    if spec.kind == "redis":
        from limpet.hub.brokers.redis import RedisBroker

        return RedisBroker(url, options)
    if spec.kind == "redis-cluster":
        from limpet.hub.brokers.redis_cluster import RedisClusterBroker

        return RedisClusterBroker(spec, options)
    if spec.kind == "redis-sentinel":
        from limpet.hub.brokers.redis_sentinel import RedisSentinelBroker

        return RedisSentinelBroker(spec, options)
    require("nats", feature="the nats broker", extra="nats")
    from limpet.hub.brokers.nats import NatsBroker

    return NatsBroker(spec, options, replicas=nats_replicas)


__all__ = ["BrokerUrl", "open_broker", "parse_broker_url"]
