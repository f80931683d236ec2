"""SANS-IO: the rebalance planner: which live sessions to move off over-full backends, and when.

Sticky sessions stay where they were placed, so after a scale-up the new backends get only new
sessions and the old ones stay hot for hours. The planner looks at the pool's sessions (facts
from limpet.pool.sessions) and answers with moves (session key, backend, reason); the I/O side
carries them out (a WebSocket closed with 1012, a polling session repinned at its next request).

The rules, each a test in tests/unit/pool/test_rebalance.py:

- **spread**: a backend's *share* is the pool's sessions times its weight over the weights of
  the backends that take new sessions (HEALTHY). The spread is the largest sessions/share.
  Nothing moves while it is within ``bound`` (1.25: the fullest holds at most 1.25x its share).
- **hold**: the spread must stay past the bound for ``hold`` seconds (a burst of new sessions
  evens out by itself; an admin call, ``force``, skips the wait).
- **rate**: at most ``rate`` moves per second per pool (a token bucket holding one second's
  worth), and at most ``max_moving`` of the pool's sessions in flight at once (a move is in
  flight for ``settle`` seconds: the time its client takes to come back).
- **target**: an over-full backend gives up sessions down to its share (rounded up), so a
  rebalance ends even, not merely under the bound.
- **order**: the longest-idle sessions first (the ones a move disturbs least).
- **groups**: a canary group (limpet.balancing.groups) set to weight 0 (a rollback; a
  promotion sets the stable group to 0) has all its sessions moved, at the same rate, with
  no bound and no hold (the operator decided); the others' shares follow the group weights.
- **never**: off a DRAINING backend (the drain already moves its sessions, at its own pace),
  off an EJECTED one (its sessions are lost anyway), while the pool is in panic, or while a
  backend that takes new sessions was never seen up (it may be about to fail: sessions moved
  there would move twice).

``Planner`` keeps the little state the rules need (since when over, the bucket, the moves in
flight); ``plan`` is otherwise a function of its arguments.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from limpet.pool.model import BackendState
from limpet.pool.sessions import SessionFact

#: why a session moved: the automatic rebalance, an admin call (POST /rebalance), its group
#: set to weight 0 (a canary rolled back, a stable group replaced by a promoted canary)
MoveReason = Literal["spread", "admin", "rollback", "promote"]
#: why nothing moved (None: the spread is within the bound, or moves were made)
Blocked = Literal["disabled", "panic", "unseen", "few", "holding", "rate", "in-flight"]


@dataclass(frozen=True, slots=True)
class RebalanceRules:
    """Per pool: config ``pools.NAME.rebalance``, ``--rebalance`` for every pool."""

    enabled: bool = False
    bound: float = 1.25  # the fullest backend may hold this multiple of its weighted share
    hold: float = 10.0  # seconds past the bound before anything moves
    rate: float = 20.0  # moves per second, per pool
    max_moving: float = 0.1  # fraction of the pool's sessions that may be in flight at once
    settle: float = 5.0  # seconds a move counts as in flight
    min_sessions: int = 4  # fewer sessions than this in the pool: nothing to even out

    def __post_init__(self) -> None:
        if not self.bound >= 1.0:
            raise ValueError("rebalance bound must be >= 1.0 (1.25: 25 % over the share)")
        if not self.rate > 0:
            raise ValueError("rebalance rate must be > 0 sessions per second")
        if not 0 < self.max_moving <= 1:
            raise ValueError("rebalance max-moving must be a fraction in (0, 1]")
        if self.hold < 0 or self.settle < 0 or self.min_sessions < 0:
            raise ValueError("rebalance hold, settle and min-sessions must be >= 0")


@dataclass(frozen=True, slots=True)
class BackendFacts:
    """One backend as the planner sees it."""

    id: str
    state: BackendState
    weight: float = 1  # its share of new sessions (a canary group's split included)
    seen_up: bool = True
    #: its group was set to weight 0: every session moves (at the rate), bound or not
    evacuate: MoveReason | None = None


@dataclass(frozen=True, slots=True)
class Move:
    key: str
    backend: str
    tunnel: bool
    reason: MoveReason


@dataclass(frozen=True, slots=True)
class Plan:
    moves: tuple[Move, ...]
    spread: float  # sessions/share of the fullest backend taking new sessions (1.0: even)
    blocked: Blocked | None = None
    #: backend id -> its share (sessions it would hold if the pool were even)
    shares: tuple[tuple[str, float], ...] = ()


def spread_of(counts: dict[str, int], weights: dict[str, float]) -> tuple[float, dict[str, float]]:
    """(the largest sessions/share, the shares) over the backends in ``weights``."""
    total = sum(counts.get(b, 0) for b in weights)
    wsum = sum(weights.values())
    if total == 0 or wsum == 0:
        return 1.0, dict.fromkeys(weights, 0.0)
    shares = {b: total * w / wsum for b, w in weights.items()}
    spread = max((counts.get(b, 0) / s for b, s in shares.items() if s > 0), default=1.0)
    return spread, shares


class Planner:
    """The rebalance of one pool (see the module docstring)."""

    def __init__(self, rules: RebalanceRules) -> None:
        self.rules = rules
        self.over_since: float | None = None
        self._tokens = rules.rate
        self._last: float | None = None
        self._in_flight: deque[float] = deque()  # when each move in flight was made

    def __repr__(self) -> str:
        return f"Planner(over_since={self.over_since}, in_flight={len(self._in_flight)})"

    def in_flight(self, now: float) -> int:
        flight = self._in_flight
        while flight and flight[0] + self.rules.settle <= now:
            flight.popleft()
        return len(flight)

    def _refill(self, now: float) -> None:
        rate = self.rules.rate
        if self._last is not None:
            self._tokens = min(max(rate, 1.0), self._tokens + (now - self._last) * rate)
        self._last = now

    def plan(
        self,
        backends: Sequence[BackendFacts],
        sessions: Iterable[SessionFact] | Callable[[], Iterable[SessionFact]],
        *,
        now: float,
        panic: bool = False,
        force: bool = False,
        counts: Mapping[str, int] | None = None,
    ) -> Plan:
        """The moves to make at ``now`` (``force``: an admin call, no hold time, even when
        the rebalance is not enabled for the pool).

        ``counts`` (backend -> sessions, the ledger's live figures) decide whether anything
        moves; ``sessions`` (or a function that lists them) is read only when something does,
        to choose which: listing every session each second would cost more than the decision.
        """
        rules = self.rules
        self._refill(now)
        healthy = [b for b in backends if b.state is BackendState.HEALTHY]
        weights = {b.id: b.weight for b in healthy if b.weight > 0 and b.evacuate is None}
        evacuate = {b.id: b.evacuate for b in healthy if b.evacuate is not None}
        facts: list[SessionFact] | None = None
        if counts is None:
            facts = list(sessions() if callable(sessions) else sessions)
            counts = Counter(s.backend for s in facts)
        live = {b: counts.get(b, 0) for b in weights}
        spread, shares = spread_of(live, weights)
        shares_out = tuple(sorted(shares.items()))
        leaving = sum(counts.get(b, 0) for b in evacuate)

        def blocked(why: Blocked) -> Plan:
            return Plan((), spread, why, shares_out)

        over = spread > rules.bound
        if not over:
            self.over_since = None
        elif self.over_since is None:
            self.over_since = now
        if not over and not leaving:
            return Plan((), spread, None, shares_out)
        if not rules.enabled and not force and not leaving:
            return blocked("disabled")
        if panic:
            return blocked("panic")
        if any(b.state is not BackendState.EJECTED and not b.seen_up for b in backends):
            return blocked("unseen")
        if not weights:
            return blocked("few")  # nowhere to move to
        total = sum(live.values()) + leaving
        room = max(1, math.floor(rules.max_moving * total)) - self.in_flight(now)
        if room <= 0:
            return blocked("in-flight")
        allowed = min(room, math.floor(self._tokens))
        if allowed <= 0:
            return blocked("rate")
        if facts is None:
            facts = list(sessions() if callable(sessions) else sessions)
        by_backend: dict[str, list[SessionFact]] = {b: [] for b in (*weights, *evacuate)}
        for fact in facts:
            group = by_backend.get(fact.backend)
            if group is not None:
                group.append(fact)
        moves: list[Move] = []
        # a group set to weight 0 (rollback, promotion) empties first, longest idle first
        for b, reason in sorted(evacuate.items()):
            for s in sorted(by_backend[b], key=_idle_first)[: allowed - len(moves)]:
                moves.append(Move(s.key, b, s.tunnel, reason))
        spreading = (rules.enabled or force) and over
        if spreading and (total - leaving < rules.min_sessions or len(weights) < 2):
            spreading = False
        if spreading and not force and now - self.over_since < rules.hold:  # type: ignore[operator]
            if not moves:
                return blocked("holding")
            spreading = False
        if spreading:
            moves.extend(self._spread(by_backend, live, shares, allowed - len(moves), force))
        elif not moves:
            return blocked("few")
        self._tokens -= len(moves)
        self._in_flight.extend([now] * len(moves))
        return Plan(tuple(moves), spread, None, shares_out)

    @staticmethod
    def _spread(
        by_backend: dict[str, list[SessionFact]],
        counts: dict[str, int],
        shares: dict[str, float],
        allowed: int,
        force: bool,
    ) -> list[Move]:
        # what each over-full backend gives up: down to its share, rounded up
        excess = {b: counts[b] - math.ceil(shares[b]) for b in counts}
        queues = {b: sorted(by_backend[b], key=_idle_first) for b, n in excess.items() if n > 0}
        moves: list[Move] = []
        reason: MoveReason = "admin" if force else "spread"
        while len(moves) < allowed and queues:
            # the backend furthest over its share gives up its longest-idle session
            b = max(queues, key=lambda k: (excess[k] / max(shares[k], 1e-9), k))
            s = queues[b].pop(0)
            moves.append(Move(s.key, b, s.tunnel, reason))
            excess[b] -= 1
            if excess[b] <= 0 or not queues[b]:
                del queues[b]
        return moves


def _idle_first(s: SessionFact) -> tuple[float, str]:
    return (-s.idle, s.key)
