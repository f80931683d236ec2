"""SANS-IO: least connections, reading the pool's live open counts (``PoolSnapshot.load``).

Weighted: the fewest open connections *per unit of weight* (``load / weight``, compared as
``load_a * weight_b < load_b * weight_a`` to stay in integers); all weights 1 is plain counts.
"""

from __future__ import annotations

from collections.abc import Sequence

from limpet.pool.model import BackendView, PoolSnapshot


class LeastConnections:
    """The candidate with the fewest open connections; ties rotate so a burst of new
    sessions (all seeing the same counts before their connections open) still spreads."""

    name = "least-connections"
    #: the PoolSnapshot method that counts a backend's load
    measure = "load"

    def __init__(self) -> None:
        self._start = 0

    def choose(self, candidates: Sequence[BackendView], pool: PoolSnapshot) -> BackendView | None:
        n = len(candidates)
        if n == 0:
            return None
        count = getattr(pool, self.measure)
        start = self._start % n
        self._start = start + 1
        best = candidates[start]
        best_load, best_weight = count(best.id), max(best.weight, 1)
        for step in range(1, n):
            candidate = candidates[(start + step) % n]
            load, weight = count(candidate.id), max(candidate.weight, 1)
            if load * best_weight < best_load * weight:
                best, best_load, best_weight = candidate, load, weight
        return best


class LeastSessions(LeastConnections):
    """The candidate with the fewest sessions per unit of weight (``PoolSnapshot.sessions``:
    open tunnels, sessions active within a window, placements not yet confirmed)."""

    name = "least-sessions"
    measure = "sessions"
