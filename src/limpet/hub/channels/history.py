"""Bounded channel history: per-prefix size/TTL rules, and an in-memory log of one channel.

The log is what the memory broker stores; the Redis and NATS brokers keep the same shape on their
server (a stream trimmed to ``size``, entries older than ``ttl`` skipped) and reuse ``trim_expired``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from limpet.errors import ConfigError
from limpet.hub.channels.idempotency import IdempotencyWindow
from limpet.hub.channels.records import HistoryPage, Message, Position


@dataclass(frozen=True)
class HistoryPolicy:
    """How much of a channel's past is kept: at most ``size`` messages, none older than ``ttl`` s."""

    size: int = 1000
    ttl: float = 300.0

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ConfigError("history size must be >= 0", key="history.size")
        if self.ttl <= 0:
            raise ConfigError("history ttl must be > 0", key="history.ttl")


@dataclass(frozen=True)
class HistoryRules:
    """History policy per channel-name prefix; the longest matching prefix wins."""

    default: HistoryPolicy = field(default_factory=HistoryPolicy)
    by_prefix: tuple[tuple[str, HistoryPolicy], ...] = ()

    def for_channel(self, channel: str) -> HistoryPolicy:
        best: tuple[int, HistoryPolicy] = (-1, self.default)
        for prefix, policy in self.by_prefix:
            if channel.startswith(prefix) and len(prefix) > best[0]:
                best = (len(prefix), policy)
        return best[1]

    @classmethod
    def parse(cls, default: HistoryPolicy, specs: list[str]) -> HistoryRules:
        """Parse ``PREFIX=SIZE[:TTL]`` flags (``--history-rule chat.=500:60``)."""
        rules: list[tuple[str, HistoryPolicy]] = []
        for spec in specs:
            prefix, sep, rest = spec.partition("=")
            size_text, _, ttl_text = rest.partition(":")
            try:
                if not sep or not prefix:
                    raise ValueError
                policy = HistoryPolicy(int(size_text), float(ttl_text) if ttl_text else default.ttl)
            except ValueError:
                raise ConfigError(
                    f"expected PREFIX=SIZE[:TTL], got {spec!r}", key="history-rule"
                ) from None
            rules.append((prefix, policy))
        return cls(default, tuple(rules))


def trim_expired(messages: list[Message], *, now_ms: int, ttl: float) -> list[Message]:
    """Drop messages older than ``ttl`` seconds at ``now_ms`` (history is time-ordered)."""
    horizon = now_ms - int(ttl * 1000)
    start = 0
    while start < len(messages) and messages[start].ts < horizon:
        start += 1
    return messages[start:]


class ChannelLog:
    """One channel's epoch, last offset, retained messages and idempotency keys (memory broker)."""

    def __init__(
        self, channel: str, epoch: str, policy: HistoryPolicy, idempotency_ttl: float = 60.0
    ) -> None:
        self.channel = channel
        self.epoch = epoch
        self.offset = 0
        self.policy = policy
        self._messages: deque[Message] = deque(maxlen=policy.size)
        self._idem = IdempotencyWindow(ttl=idempotency_ttl)

    def __repr__(self) -> str:
        return (
            f"ChannelLog(channel={self.channel!r}, epoch={self.epoch!r}, offset={self.offset}, "
            f"retained={len(self._messages)})"
        )

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.offset)

    def append(
        self, data: Any, *, now_ms: int, idempotency_key: str | None = None
    ) -> tuple[Message, bool]:
        """Give ``data`` the next offset and keep it. Returns (message, duplicate): a key seen
        within the window returns the first message's position and stores nothing new."""
        if idempotency_key is not None:
            seen = self._idem.get(idempotency_key, now_ms=now_ms)
            if seen is not None and seen.epoch == self.epoch:
                return Message(self.channel, seen.epoch, seen.offset, data, now_ms), True
        self.offset += 1
        message = Message(self.channel, self.epoch, self.offset, data, now_ms)
        self._messages.append(message)
        if idempotency_key is not None:
            self._idem.put(idempotency_key, message_position(message), now_ms=now_ms)
        return message, False

    def page(self, since: int | None, limit: int, *, now_ms: int) -> HistoryPage:
        """Position plus retained messages with offset > ``since`` (at most ``limit``)."""
        if since is None or limit <= 0:
            return HistoryPage(self.epoch, self.offset)
        kept = trim_expired(list(self._messages), now_ms=now_ms, ttl=self.policy.ttl)
        selected = [m for m in kept if m.offset > since][:limit]
        return HistoryPage(self.epoch, self.offset, tuple(selected))


def message_position(message: Message) -> Position:
    return Position(message.epoch, message.offset)
