"""What one client may make the hub hold and do (issue-17 bounds), as plain values.

- channels per client: a subscribe past it gets an error ack;
- subscribes and publishes per second per client: token buckets, an error ack when empty.

These are the defaults; a namespace (``limpet.hub.namespaces``) overrides them for its channels.
Time is a parameter (``now``, seconds, monotonic).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClientLimits:
    #: channels one client may be subscribed to at once (0: no limit)
    channels_per_client: int = 128
    #: subscribes per second per client, sustained (0: no limit); bursts up to 2x a second's worth
    subscribes_per_second: float = 50.0
    #: publishes per second per client, sustained (0: no limit); bursts up to 2x a second's worth
    publishes_per_second: float = 1000.0

    def __post_init__(self) -> None:
        if min(self.channels_per_client, self.subscribes_per_second, self.publishes_per_second) < 0:
            raise ValueError("client limits must be >= 0 (0: no limit)")


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved; ``take`` spends one if there is one."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.tokens = self.burst
        self.stamp = now

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate}, tokens={self.tokens:.1f}/{self.burst})"

    def take(self, now: float) -> bool:
        if self.rate <= 0:
            return True
        elapsed = max(0.0, now - self.stamp)
        self.stamp = now
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class ClientBudget:
    """One client's buckets (they live on the hub's Client and go with it)."""

    __slots__ = ("publishes", "subscribes")

    def __init__(self, limits: ClientLimits, now: float) -> None:
        self.subscribes = TokenBucket(
            limits.subscribes_per_second, 2 * limits.subscribes_per_second, now
        )
        self.publishes = TokenBucket(
            limits.publishes_per_second, 2 * limits.publishes_per_second, now
        )
