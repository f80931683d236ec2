"""Idempotent publish: remember which position a key got, for a window of time and count."""

from __future__ import annotations

from collections import OrderedDict

from limpet.hub.channels.records import Position


class IdempotencyWindow:
    """key -> Position, forgotten after ``ttl`` seconds or when more than ``max_keys`` are held."""

    def __init__(self, *, ttl: float = 60.0, max_keys: int = 10_000) -> None:
        self.ttl_ms = int(ttl * 1000)
        self.max_keys = max_keys
        self._seen: OrderedDict[str, tuple[Position, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now_ms: int) -> None:
        while self._seen:
            key, (_, at) = next(iter(self._seen.items()))
            if now_ms - at < self.ttl_ms and len(self._seen) <= self.max_keys:
                break
            del self._seen[key]

    def get(self, key: str, *, now_ms: int) -> Position | None:
        self._expire(now_ms)
        entry = self._seen.get(key)
        return entry[0] if entry else None

    def put(self, key: str, position: Position, *, now_ms: int) -> None:
        self._seen[key] = (position, now_ms)
        self._seen.move_to_end(key)
        self._expire(now_ms)
