"""SANS-IO: affinity ``none``: every request is balanced afresh (no pin, no cookie)."""

from __future__ import annotations

from limpet.affinity.base import Pick, PickReason, RequestFacts
from limpet.balancing.base import Balancer
from limpet.pool.model import PoolSnapshot


class NonePolicy:
    """Round robin, least connections or power of two choices over the healthy backends."""

    name = "none"

    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer

    def pick(self, facts: RequestFacts, pool: PoolSnapshot) -> Pick:
        backend = self.balancer.choose(pool.eligible(), pool)
        if backend is None:
            return Pick(None, PickReason.NO_BACKEND)
        return Pick(backend, PickReason.NEW)

    def __repr__(self) -> str:
        return f"NonePolicy(balance={self.balancer.name!r})"
