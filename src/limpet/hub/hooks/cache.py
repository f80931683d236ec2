"""Subscribe decisions kept while a client stays connected, bounded.

A client that subscribes to the same channel again (after an unsubscribe, or a re-subscribe with
``since`` after a gap) is not sent to the application again: the grant it had is reused until
the client disconnects (the cache lives on the client). At most ``limit`` channels are kept; the
oldest grant is forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class GrantCache(Generic[V]):
    __slots__ = ("_grants", "limit")

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self._grants: OrderedDict[str, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._grants)

    def __repr__(self) -> str:
        return f"GrantCache(size={len(self._grants)}, limit={self.limit})"

    def get(self, channel: str) -> V | None:
        return self._grants.get(channel)

    def put(self, channel: str, grant: V) -> None:
        if self.limit <= 0:
            return
        self._grants[channel] = grant
        self._grants.move_to_end(channel)
        while len(self._grants) > self.limit:
            self._grants.popitem(last=False)
