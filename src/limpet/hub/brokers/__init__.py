"""Brokers: the backplane hub replicas share. ``open_broker`` picks one from a URL."""

from __future__ import annotations

from limpet.errors import UsageError, require
from limpet.hub.brokers.base import Broker, BrokerOptions


def open_broker(url: str, options: BrokerOptions) -> Broker:
    """``memory`` / ``memory://NAME``, ``redis://HOST:PORT[/DB]``, ``nats://HOST:PORT``."""
    scheme, sep, _ = url.partition("://")
    if url == "memory" or scheme == "memory":
        from limpet.hub.brokers.memory import MemoryBroker

        return MemoryBroker(options, backplane=url.partition("://")[2] if sep else "")
    if scheme in ("redis", "rediss", "unix"):
        require("redis.asyncio", feature="the redis broker", extra="redis")
        from limpet.hub.brokers.redis import RedisBroker

        return RedisBroker(url, options)
    if scheme in ("nats", "tls"):
        require("nats", feature="the nats broker", extra="nats")
        from limpet.hub.brokers.nats import NatsBroker

        return NatsBroker(url, options)
    raise UsageError(f"unknown broker {url!r}: use memory, redis://HOST:PORT or nats://HOST:PORT")


__all__ = ["Broker", "BrokerOptions", "open_broker"]
