"""The send queue of one Engine.IO socket, without asyncio.Queue's fixed cost per connection.

python-engineio gives every connection a queue (``AsyncServer.create_queue``, its public hook
for this) that its writer task waits on. ``asyncio.Queue`` creates three deques at once (its
items, its waiting getters, its waiting putters): 2.4 KB per connection of a replica's heap
(bench/hub/conn_memory.py), for a queue that is empty nearly all its life, since the hub writes
fan-out frames straight to the websocket when nothing waits (transport.enqueue).

``SendQueue`` is the part of asyncio.Queue's interface python-engineio and the hub use (an
unbounded FIFO: put, put_nowait, get, get_nowait, task_done, join, empty, qsize, full), with the
same semantics, the stdlib's cancellation handling included; each part is created on first use
and dropped once empty, so an idle connection's queue is one small object. A differential
property test holds it to asyncio.Queue (tests/unit/hub/test_sendqueue.py).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


def _wake_first(waiters: list[asyncio.Future[None]]) -> None:
    while waiters:
        waiter = waiters.pop(0)
        if not waiter.done():
            waiter.set_result(None)
            return


class SendQueue:
    """An unbounded FIFO with asyncio.Queue's semantics; its parts exist only while in use."""

    __slots__ = ("_getters", "_items", "_joiners", "_unfinished")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None
        self._getters: list[asyncio.Future[None]] | None = None
        self._joiners: list[asyncio.Future[None]] | None = None
        self._unfinished = 0

    def __repr__(self) -> str:
        return f"SendQueue(qsize={self.qsize()}, unfinished={self._unfinished})"

    @property
    def maxsize(self) -> int:
        return 0

    def qsize(self) -> int:
        return len(self._items) if self._items is not None else 0

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return False

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        self._unfinished += 1
        if self._getters:
            _wake_first(self._getters)
            if not self._getters:
                self._getters = None

    async def put(self, item: Any) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        items = self._items
        if not items:
            raise asyncio.QueueEmpty
        item = items.popleft()
        if not items:
            self._items = None
        return item

    async def get(self) -> Any:
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()  # in case it is not done yet
                getters = self._getters
                if getters is not None:
                    if getter in getters:
                        getters.remove(getter)
                    # woken, then cancelled: the item it was woken for goes to the next getter
                    if self._items and not getter.cancelled():
                        _wake_first(getters)
                    if not getters:
                        self._getters = None
                raise
        return self.get_nowait()

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0 and self._joiners is not None:
            joiners, self._joiners = self._joiners, None
            for joiner in joiners:
                if not joiner.done():
                    joiner.set_result(None)

    async def join(self) -> None:
        if self._unfinished > 0:
            joiner = asyncio.get_running_loop().create_future()
            if self._joiners is None:
                self._joiners = []
            self._joiners.append(joiner)
            await joiner
