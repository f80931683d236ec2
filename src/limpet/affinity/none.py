"""SANS-IO: affinity ``none``: every request is balanced afresh (no pin, no cookie)."""

from __future__ import annotations

from limpet.affinity.base import Pick, PickReason, RequestFacts
from limpet.balancing.base import Balancer
from limpet.pool.model import PoolSnapshot

#: the remembered picks, at most (one per backend id)
NEW_PICKS = 256


class NonePolicy:
    """Round robin, least connections or power of two choices over the healthy backends."""

    name = "none"

    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer
        #: backend id -> Pick(its view, NEW), made again when the view is another object (a new
        #: snapshot): a Pick is frozen, and building one per request cost ~0.5 µs of each
        self._new: dict[str, Pick] = {}

    def pick(self, facts: RequestFacts, pool: PoolSnapshot) -> Pick:
        backend = self.balancer.choose(pool.eligible(), pool)
        if backend is None:
            return Pick(None, PickReason.NO_BACKEND)
        made = self._new.get(backend.id)
        if made is None or made.backend is not backend:
            if len(self._new) > NEW_PICKS:
                self._new.clear()  # bounded: ids of backends long gone
            made = self._new[backend.id] = Pick(backend, PickReason.NEW)
        return made

    def __repr__(self) -> str:
        return f"NonePolicy(balance={self.balancer.name!r})"
