"""SANS-IO: round robin over the eligible backends, in the snapshot's stable order."""

from __future__ import annotations

from collections.abc import Sequence

from limpet.pool.model import BackendView, PoolSnapshot


class RoundRobin:
    """Each call takes the next backend; a changing candidate list just wraps the counter."""

    name = "round-robin"

    def __init__(self) -> None:
        self._next = 0

    def choose(self, candidates: Sequence[BackendView], pool: PoolSnapshot) -> BackendView | None:
        if not candidates:
            return None
        index = self._next % len(candidates)
        self._next = index + 1
        return candidates[index]

    def __repr__(self) -> str:
        return f"RoundRobin(next={self._next})"
