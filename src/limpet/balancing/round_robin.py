"""SANS-IO: round robin over the eligible backends, in the snapshot's stable order.

Weights (``BackendView.weight``) use nginx's smooth weighted round robin: each pick adds every
candidate's weight to its running credit, takes the largest, and charges it the total; with
weights 3:1 the order is a a b a, never a a a b. All weights 1 (the common case) skip that and
rotate a counter, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

from limpet.pool.model import BackendView, PoolSnapshot


class RoundRobin:
    """Each call takes the next backend; a changing candidate list just wraps the counter."""

    name = "round-robin"

    def __init__(self) -> None:
        self._next = 0
        self._credit: dict[str, int] = {}
        self._seen: Sequence[BackendView] | None = None  # the last candidates (by identity)
        self._weighted = False

    def choose(self, candidates: Sequence[BackendView], pool: PoolSnapshot) -> BackendView | None:
        if not candidates:
            return None
        if candidates is not self._seen:  # snapshots are cached: this runs on changes only
            self._seen = candidates
            self._weighted = any(b.weight != 1 for b in candidates)
        if self._weighted:
            return self._smooth(candidates)
        index = self._next % len(candidates)
        self._next = index + 1
        return candidates[index]

    def _smooth(self, candidates: Sequence[BackendView]) -> BackendView:
        credit = self._credit
        total = 0
        best: BackendView | None = None
        best_credit = 0
        for b in candidates:
            weight = max(b.weight, 0)
            total += weight
            c = credit.get(b.id, 0) + weight
            credit[b.id] = c
            if best is None or c > best_credit:
                best, best_credit = b, c
        assert best is not None
        credit[best.id] = best_credit - total
        if len(credit) > 4 * len(candidates):  # forget backends long gone
            keep = {b.id for b in candidates}
            for bid in [k for k in credit if k not in keep]:
                del credit[bid]
        return best

    def __repr__(self) -> str:
        return f"RoundRobin(next={self._next})"
