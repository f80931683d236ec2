"""Idle deadlines of many tunnels on one loop timer: a timer wheel.

An idle WebSocket held one ``TimerHandle`` (with its bound method and context: 544 bytes of the
proxy's ~6.8 KB per idle WebSocket, measured with tracemalloc at 1 000 tunnels). Here the
deadlines are filed in slots of ``RESOLUTION`` seconds; one loop timer, armed for the earliest
slot, hands each tunnel filed there back to its own check (``Tunnel._on_timer``), which closes it
or files it again for its new deadline. A tunnel costs one set entry instead. The price: an idle
tunnel ends up to ``RESOLUTION`` seconds after its deadline, never before it.

``IdleWheel`` is the bookkeeping, with time as a parameter (tested without a loop);
``IdleTimers`` drives it with the loop's clock (one per proxy: ``ProxyContext.idle``); its loop
timer is armed only while it holds a deadline.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from typing import Generic, Protocol, TypeVar

#: seconds per slot: how late past its deadline an idle tunnel may be closed
RESOLUTION = 0.5


class Expiring(Protocol):
    """What the wheel files: something that checks its own deadline when its slot is due."""

    idle_slot: int | None

    def _on_timer(self) -> None: ...


T = TypeVar("T", bound=Expiring)


class IdleWheel(Generic[T]):
    """Items filed by deadline in slots of ``resolution`` seconds; ``due(now)`` takes out the
    ones whose slot time has come. Each item remembers its slot (``idle_slot``), so taking
    it out early (``remove``) is O(1)."""

    __slots__ = ("_keys", "resolution", "slots")

    def __init__(self, resolution: float = RESOLUTION) -> None:
        self.resolution = resolution
        self.slots: dict[int, set[T]] = {}
        self._keys: list[int] = []  # heap of the keys of ``slots``

    def __len__(self) -> int:
        return sum(len(s) for s in self.slots.values())

    def __bool__(self) -> bool:
        return bool(self.slots)

    def __repr__(self) -> str:
        return f"IdleWheel(slots={len(self.slots)}, items={len(self)})"

    def add(self, item: T, deadline: float) -> None:
        """File ``item`` in the first slot that starts at or after ``deadline``."""
        self.remove(item)
        key = math.ceil(deadline / self.resolution)
        slot = self.slots.get(key)
        if slot is None:
            slot = self.slots[key] = set()
            heapq.heappush(self._keys, key)
        slot.add(item)
        item.idle_slot = key

    def remove(self, item: T) -> None:
        key = item.idle_slot
        if key is None:
            return
        item.idle_slot = None
        slot = self.slots.get(key)
        if slot is not None:
            slot.discard(item)
            if not slot:
                del self.slots[key]  # its key leaves the heap when it comes first (next_time)

    def next_time(self) -> float | None:
        """When the earliest non-empty slot is due, or None when nothing is filed."""
        keys = self._keys
        while keys and keys[0] not in self.slots:
            heapq.heappop(keys)
        return keys[0] * self.resolution if keys else None

    def due(self, now: float) -> list[T]:
        """Take out every item of the slots due at ``now`` (earliest slot first)."""
        out: list[T] = []
        keys = self._keys
        while keys and keys[0] * self.resolution <= now:
            slot = self.slots.pop(heapq.heappop(keys), None)
            if slot:
                for item in slot:
                    item.idle_slot = None
                out.extend(slot)
        return out


class IdleTimers(Generic[T]):
    """One loop timer for every idle deadline on ``loop``; see the module docstring."""

    __slots__ = ("_handle", "_when", "loop", "wheel")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.wheel: IdleWheel[T] = IdleWheel()
        self._handle: asyncio.TimerHandle | None = None
        self._when = math.inf

    def __repr__(self) -> str:
        return f"IdleTimers({self.wheel!r}, next={self._when})"

    def add(self, item: T, deadline: float) -> None:
        """(Re)file ``item``: its ``_on_timer`` runs at ``deadline`` (up to RESOLUTION late)."""
        self.wheel.add(item, deadline)
        self._arm()

    def remove(self, item: T) -> None:
        self.wheel.remove(item)
        if not self.wheel:
            self._stop()

    def _arm(self) -> None:
        when = self.wheel.next_time()
        if when is None:
            self._stop()
            return
        if when < self._when:
            if self._handle is not None:
                self._handle.cancel()
            self._when = when
            self._handle = self.loop.call_at(when, self._tick)

    def _stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._when = math.inf

    def _tick(self) -> None:
        self._handle = None
        self._when = math.inf
        for item in self.wheel.due(self.loop.time()):
            item._on_timer()  # closes it, or files it again (add)
        if self.wheel:
            self._arm()
        else:
            self._stop()
