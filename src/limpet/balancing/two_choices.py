"""SANS-IO: power of two choices: sample two candidates, keep the less loaded one.

Near least-connections balance without scanning every backend (Mitzenmacher, 2001). Weighted:
the less loaded per unit of weight (as least connections).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from limpet.pool.model import BackendView, PoolSnapshot


class PowerOfTwoChoices:
    name = "power-of-two"
    #: the PoolSnapshot method that counts a backend's load
    measure = "load"

    def __init__(self, rand: Callable[[int], int] | None = None) -> None:
        # ``rand(n)`` returns 0..n-1; injectable so tests are deterministic.
        self._rand: Callable[[int], int] = rand or random.Random().randrange

    def choose(self, candidates: Sequence[BackendView], pool: PoolSnapshot) -> BackendView | None:
        n = len(candidates)
        if n == 0:
            return None
        if n == 1:
            return candidates[0]
        i = self._rand(n)
        j = self._rand(n - 1)
        if j >= i:
            j += 1  # a second, distinct candidate
        a, b = candidates[i], candidates[j]
        count = getattr(pool, self.measure)
        return a if count(a.id) * max(b.weight, 1) <= count(b.id) * max(a.weight, 1) else b


class PowerOfTwoSessions(PowerOfTwoChoices):
    """Two candidates sampled, the one with fewer sessions per unit of weight kept."""

    name = "power-of-two-sessions"
    measure = "sessions"
