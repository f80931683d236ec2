"""SANS-IO: least connections, reading the pool's live open counts (``PoolSnapshot.load``)."""

from __future__ import annotations

from collections.abc import Sequence

from limpet.pool.model import BackendView, PoolSnapshot


class LeastConnections:
    """The candidate with the fewest open connections; ties rotate so a burst of new
    sessions (all seeing the same counts before their connections open) still spreads."""

    name = "least-connections"

    def __init__(self) -> None:
        self._start = 0

    def choose(self, candidates: Sequence[BackendView], pool: PoolSnapshot) -> BackendView | None:
        n = len(candidates)
        if n == 0:
            return None
        start = self._start % n
        self._start = start + 1
        best = candidates[start]
        best_load = pool.load(best.id)
        for step in range(1, n):
            candidate = candidates[(start + step) % n]
            load = pool.load(candidate.id)
            if load < best_load:
                best, best_load = candidate, load
        return best
