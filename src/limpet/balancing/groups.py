"""SANS-IO: canary groups: new sessions split between backend groups by weight.

A pool's backends may belong to groups (``stable`` and ``canary`` in config, or read from a
Gateway API ``backendRefs`` weight, ingress-nginx canary annotations, a Traefik weighted
service). ``GroupSplit`` wraps the pool's balancer: for each *new* session it first picks a
group by weight, with the smooth weighted round robin of nginx (so 10 % is one session in ten,
exactly, not a coin toss per session), then lets the wrapped balancer choose within it.

Pinned sessions never come here: a session stays on its backend, and so on its group, however
the weights change (ingress-nginx #3717: pinned users flapping between versions). A group
whose weight is set to 0 takes no new sessions, and its pinned sessions are moved at the
rebalance rate (``evacuating``): a rollback (canary to 0) or a promotion (stable to 0).

A group without eligible backends hands its turn to the others (never a 503 because of a
weight); backends not named in ``groups`` are ``stable``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from limpet.balancing.base import Balancer
from limpet.pool.model import BackendView, PoolSnapshot

STABLE = "stable"
CANARY = "canary"


class GroupSplit:
    """A balancer that splits new sessions between groups by weight (see the module doc)."""

    def __init__(
        self, inner: Balancer, groups: Mapping[str, str], weights: Mapping[str, int]
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.groups = dict(groups)  # backend id -> group
        self.weights: dict[str, int] = {}
        self._credit: dict[str, int] = {}
        self._seen: Sequence[BackendView] | None = None
        self._split: dict[str, tuple[BackendView, ...]] = {}
        self.set_weights(weights)

    def __repr__(self) -> str:
        return f"GroupSplit({self.inner.name!r}, weights={self.weights!r})"

    def set_weights(self, weights: Mapping[str, int]) -> None:
        """New weights (e.g. canary 10 -> 0): from the next new session on."""
        for group, weight in weights.items():
            if weight < 0:
                raise ValueError(f"group {group!r}: weight must be >= 0")
        self.weights = dict(weights)
        self._credit = {}

    def group_of(self, backend_id: str) -> str:
        return self.groups.get(backend_id, STABLE)

    def evacuating(self) -> frozenset[str]:
        """Groups at weight 0 while another group takes sessions: their sessions must move."""
        if not any(self.weights.get(g, 0) > 0 for g in self.weights):
            return frozenset()
        return frozenset(g for g, w in self.weights.items() if w == 0)

    def effective_weights(self, views: Sequence[BackendView]) -> dict[str, float]:
        """Each backend's share of new sessions, as a weight: its group's weight times its own
        share of the group (for the rebalance planner's shares)."""
        totals: dict[str, int] = {}
        for b in views:
            g = self.group_of(b.id)
            totals[g] = totals.get(g, 0) + max(b.weight, 0)
        return {
            b.id: self.weights.get(self.group_of(b.id), 0)
            * max(b.weight, 0)
            / max(totals[self.group_of(b.id)], 1)
            for b in views
        }

    def _groups(self, candidates: Sequence[BackendView]) -> dict[str, tuple[BackendView, ...]]:
        if candidates is not self._seen:  # snapshots are cached: this runs on changes only
            split: dict[str, list[BackendView]] = {}
            for b in candidates:
                split.setdefault(self.group_of(b.id), []).append(b)
            self._split = {g: tuple(bs) for g, bs in split.items()}
            self._seen = candidates
        return self._split

    def choose(self, candidates: Sequence[BackendView], pool: PoolSnapshot) -> BackendView | None:
        split = self._groups(candidates)
        live = [g for g in split if self.weights.get(g, 0) > 0]
        if not live:  # every group with backends is at weight 0: serve rather than refuse
            return self.inner.choose(candidates, pool)
        if len(live) == 1:
            return self.inner.choose(split[live[0]], pool)
        credit = self._credit
        total = 0
        best, best_credit = live[0], None
        for g in sorted(live):
            w = self.weights[g]
            total += w
            c = credit.get(g, 0) + w
            credit[g] = c
            if best_credit is None or c > best_credit:
                best, best_credit = g, c
        credit[best] -= total
        return self.inner.choose(split[best], pool)


def wrap(policy: object, groups: Mapping[str, str], weights: Mapping[str, int]) -> GroupSplit:
    """Put a ``GroupSplit`` around ``policy``'s balancer (every policy that places new sessions
    holds one as ``balancer``); returns it, for weight changes."""
    inner = getattr(policy, "balancer", None)
    if inner is None:
        raise ValueError(f"affinity {getattr(policy, 'name', policy)!r} cannot split by group")
    split = GroupSplit(inner, groups, weights)
    policy.balancer = split  # type: ignore[attr-defined]
    return split
