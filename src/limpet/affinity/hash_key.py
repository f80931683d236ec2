"""SANS-IO: affinity ``hash``: Maglev over a header, cookie or query value.

Like ingress-nginx ``upstream-hash-by`` and HAProxy ``balance hdr()/url_param``: no cookie is
handed out, the key the client already sends decides. The table covers the HEALTHY backends
only; hash affinity keeps no session state, so draining or ejecting a backend moves its keys
at once (about 1/N of them), and adding one moves about 1/(N+1). Separate processes agree.

Missing or empty key: the request is balanced like affinity ``none`` (reason NEW).

Bounded load is opt-in (``hash_balance_factor``, a percentage like HAProxy's
``hash-balance-factor``; 0 = off, e.g. 125 = no backend above 1.25x the mean open count). It
reads the pool's live counts, so with it a full backend's keys spill to the next backend in the
table and proxies stop being guaranteed to agree for those keys: stickiness yields to balance.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from limpet.affinity.base import Pick, PickReason, RequestFacts
from limpet.affinity.hashing import MaglevCache
from limpet.affinity.spec import AffinitySpec
from limpet.balancing.base import Balancer
from limpet.errors import UsageError
from limpet.pool.model import PoolSnapshot


class HashPolicy:
    name = "hash"

    def __init__(self, spec: AffinitySpec, *, balancer: Balancer) -> None:
        if spec.hash_source not in ("header", "cookie", "query") or not spec.hash_key:
            raise UsageError(
                "hash affinity needs a source (header, cookie or query) and a key name"
            )
        factor = spec.hash_balance_factor
        if factor != 0 and factor < 100:
            raise UsageError(f"hash balance factor {factor} must be 0 (off) or >= 100 (percent)")
        self.source = spec.hash_source
        self.key_name = spec.hash_key.lower() if self.source == "header" else spec.hash_key
        self.load_factor = factor / 100 if factor else None
        self.balancer = balancer
        self._maglev = MaglevCache()

    def __repr__(self) -> str:
        return f"HashPolicy(source={self.source!r}, key={self.key_name!r})"

    def key(self, facts: RequestFacts) -> str | None:
        """The request's hash key, or None when it does not carry one."""
        if self.source == "header":
            value = facts.headers.get(self.key_name)
        elif self.source == "cookie":
            value = facts.cookies.get(self.key_name)
        else:
            value = None
            if facts.query:
                for name, found in parse_qsl(facts.query, keep_blank_values=True):
                    if name == self.key_name:
                        value = found
                        break
        return value or None

    def pick(self, facts: RequestFacts, pool: PoolSnapshot) -> Pick:
        key = self.key(facts)
        if key is None:
            backend = self.balancer.choose(pool.eligible(), pool)
            if backend is None:
                return Pick(None, PickReason.NO_BACKEND)
            return Pick(backend, PickReason.NEW)
        table = self._maglev.eligible(pool)
        raw = key.encode("utf-8", "surrogateescape")
        if self.load_factor is None:
            target_id = table.lookup(raw)
        else:
            target_id = table.lookup_bounded(raw, pool.load, self.load_factor)
        target = pool.get(target_id) if target_id is not None else None
        if target is None:
            return Pick(None, PickReason.NO_BACKEND)
        return Pick(target, PickReason.HASHED)
