"""What may be queued for one client, and when it has fallen too far behind (sans-IO).

The hub queues a client's packets on its transport send queue; this class decides, for each
packet, whether it is sent now, held (a subscribe ack must go out first), dropped (the client was
cut off) or whether the client just overflowed. The queue length is passed in: no I/O here.

    state      packet                       -> verdict   effect
    held > 0   any                          -> HOLD      kept, released in order by ``release``
    open       unbounded (recovered, notice)-> SEND      counts as slack above the bound
    open       bounded, queued < max+slack  -> SEND      slack forgotten once queued < max
    open       bounded, queued >= max+slack -> OVERFLOW  the client is cut off
    cut off    any                          -> DROP

Recovered messages (at most one history page at a time) and notices are *unbounded*: refusing
them would cut off a client for catching up. The bound applies on top of them until the queue is
short again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P")


class Verdict(enum.Enum):
    SEND = "send"
    HOLD = "hold"
    DROP = "drop"
    OVERFLOW = "overflow"


@dataclass(slots=True)
class Outbox(Generic[P]):
    """One client's outbound policy: holds, the bound on live packets, overflow."""

    max_queue: int
    holds: int = 0
    held: list[tuple[P, bool]] = field(default_factory=list)
    overflowed: bool = False
    #: unbounded packets queued since the queue was last short
    slack: int = 0

    def __repr__(self) -> str:
        return (
            f"Outbox(max_queue={self.max_queue}, holds={self.holds}, held={len(self.held)}, "
            f"overflowed={self.overflowed}, slack={self.slack})"
        )

    def offer(self, packet: P, *, bounded: bool, queued: int) -> Verdict:
        """Decide about ``packet`` given ``queued`` packets already waiting for the client."""
        if self.overflowed:
            return Verdict.DROP
        if self.holds:
            self.held.append((packet, bounded))
            return Verdict.HOLD
        if not bounded:
            self.slack += 1
            return Verdict.SEND
        if queued >= self.max_queue + self.slack:
            self.overflowed = True
            self.held.clear()
            return Verdict.OVERFLOW
        if self.slack and queued < self.max_queue:
            self.slack = 0
        return Verdict.SEND

    @property
    def clear(self) -> bool:
        """A bounded packet offered now with nothing queued would be sent and change nothing:
        no hold, no cut-off, no slack. Fan-out asks this (one attribute test per client)
        before writing to a client's websocket directly, instead of ``offer``."""
        return not (self.overflowed or self.holds or self.slack) and self.max_queue > 0

    def hold(self) -> None:
        """Hold everything from now until the matching ``release``."""
        self.holds += 1

    def release(self) -> list[tuple[P, bool]]:
        """End one hold; when none is left, the held packets, in order, to offer again."""
        self.holds -= 1
        if self.holds or not self.held:
            return []
        held, self.held = self.held, []
        return held
