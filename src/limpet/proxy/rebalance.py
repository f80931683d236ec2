"""I/O: session accounting and rebalance for one pool: the thin part around the sans-IO ledger
(limpet.pool.sessions) and planner (limpet.pool.rebalance).

- ``tunnel`` (called by the engineio filter when an exchange becomes a WebSocket tunnel) holds
  the session's key in the ledger while the tunnel is open; ``tick`` (once a second, for every
  pool: ``run``) releases the keys of tunnels that ended, ages the ledger, then asks the
  planner and carries out its moves:
  - a WebSocket: closed with 1012 *Service Restart* toward the client (RFC 6455 §7.4.1 via the
    IANA registry: "the server is restarting, a client may reconnect"), 1001 toward the backend.
    socket.io clients reconnect at once with a fresh handshake, which is placed by load;
  - a polling session: its key is marked moving (``moving``); its next request is answered by
    the affinity's ``moved`` hook (engineio: ``400 Session ID unknown``, so the client handshakes
    again; cookie: repinned elsewhere with a fresh cookie).
- ``run_now`` is ``POST /rebalance`` (no hold time; even for a pool without ``rebalance``).

Everything here is bounded: one entry per open tunnel, ``MOVING_MAX`` moving keys (each kept
for the ledger's window, so that every request of a moved session in flight sees it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from limpet.balancing.groups import CANARY, GroupSplit
from limpet.pool.rebalance import BackendFacts, MoveReason, Plan, Planner, RebalanceRules
from limpet.pool.sessions import SessionFact, SessionLedger
from limpet.proxy.goaway import to_backend  # 1001 toward the backend, masked (RFC 6455 §5.3)

if TYPE_CHECKING:
    from limpet.admin.metrics import ProxyMetrics
    from limpet.pool.pool import Pool

log = logging.getLogger("limpet.rebalance")

#: seconds between two ticks (counts, expiry, a plan)
TICK = 1.0
MOVING_MAX = 65536
SERVICE_RESTART = (1012).to_bytes(2, "big")
#: FIN + close, unmasked (server to client), 2-byte payload: the status code
TO_CLIENT = b"\x88\x02" + SERVICE_RESTART


class Sessions:
    """One pool's tunnels, moving keys, planner and counters."""

    def __init__(
        self,
        pool_name: str,
        pool: Pool,
        rules: RebalanceRules,
        metrics: ProxyMetrics,
        *,
        groups: GroupSplit | None = None,
    ) -> None:
        self.pool_name = pool_name
        self.groups = groups
        self.pool = pool
        self.ledger: SessionLedger = pool.sessions
        self.rules = rules
        self.planner = Planner(rules)
        self.metrics = metrics
        self.tunnels: dict[str, Any] = {}  # key -> its open Tunnel
        #: keys of moved polling sessions -> when they were moved (their next request repins)
        self.moving: OrderedDict[str, float] = OrderedDict()
        self.last_plan: Plan | None = None
        self.moves: dict[str, int] = {}  # reason -> moves made by this process
        self.answered: set[str] = set()  # backends that answered a request (seen up)
        self.history: list[tuple[float, dict[str, int]]] = []  # (time, counts), bounded

    def __repr__(self) -> str:
        return (
            f"Sessions({self.pool_name!r}, tunnels={len(self.tunnels)}, moving={len(self.moving)})"
        )

    def adopt(self, old: Sessions) -> None:
        """A reload replaced the pool's runtime: keep what the old one knew of its sessions."""
        now = time.time()
        for fact in old.ledger.sessions(now):  # oldest first, as the ledger keeps them
            self.ledger.touch(fact.backend, fact.key, now - fact.idle)
        for key, tunnel in old.tunnels.items():
            backend = old.ledger.backend_of(key)
            if backend is not None:
                self.tunnel(key, backend, tunnel)
        self.moving.update(old.moving)
        self.answered |= old.answered
        self.history = old.history
        for reason, n in old.moves.items():
            self.moves[reason] = self.moves.get(reason, 0) + n

    # -- facts in (the proxy's exchanges) --------------------------------------------------------
    def tunnel(self, key: str | None, backend: str, tunnel: Any) -> None:
        """A session's exchange became a tunnel on ``backend`` (a WebSocket-only handshake has
        no key yet: the tunnel itself names it)."""
        key = key or f"tunnel:{id(tunnel)}"
        self.ledger.hold(backend, key, time.time())
        self.tunnels[key] = tunnel

    def mark_moving(self, key: str, now: float) -> None:
        moving = self.moving
        moving[key] = now
        moving.move_to_end(key)
        while len(moving) > MOVING_MAX:
            moving.popitem(last=False)

    # -- the tick --------------------------------------------------------------------------------
    def sweep(self, now: float) -> None:
        ended = [key for key, tunnel in self.tunnels.items() if tunnel.ended]
        for key in ended:
            del self.tunnels[key]
            self.ledger.release(key, now)
        self.ledger.expire(now)
        cutoff = now - self.ledger.window
        moving = self.moving
        while moving and next(iter(moving.values())) < cutoff:
            moving.popitem(last=False)
        self.history.append((now, dict(self.ledger.counts)))
        del self.history[:-300]  # five minutes at one point a second

    def facts(self, seen_up: Iterable[tuple[str, bool]]) -> list[BackendFacts]:
        up = dict(seen_up)
        views = self.pool.views()
        groups = self.groups
        weights: dict[str, float] = {b.id: b.weight for b in views}
        leaving: frozenset[str] = frozenset()
        if groups is not None:  # shares follow the group weights; a group at 0 empties
            weights = groups.effective_weights(views)
            leaving = groups.evacuating()
        out = []
        for b in views:
            group = groups.group_of(b.id) if groups is not None else None
            evacuate: MoveReason | None = None
            if group in leaving:
                evacuate = "rollback" if group == CANARY else "promote"
            seen = up.get(b.id, False) or b.id in self.answered
            out.append(BackendFacts(b.id, b.state, weights[b.id], seen, evacuate))
        return out

    def tick(self, now: float, *, force: bool = False) -> Plan:
        self.sweep(now)

        def sessions() -> list[SessionFact]:  # listed only when something is to move
            loop_now = _loop_time()
            facts = self.ledger.sessions(now)
            tunnels = self.tunnels
            for i, fact in enumerate(facts):
                tunnel = tunnels.get(fact.key)
                if tunnel is not None and loop_now is not None:  # quiet for how long, really
                    facts[i] = replace(fact, idle=max(0.0, loop_now - tunnel.last_activity))
            return facts

        backends = self.facts((b.id, b.status.seen_up) for b in self.pool.backends())
        plan = self.planner.plan(
            backends,
            sessions,
            now=now,
            panic=self.pool.in_panic(),
            force=force,
            counts=self.ledger.counts,
        )
        self.last_plan = plan
        for move in plan.moves:
            self.move(move.key, move.reason, now)
        return plan

    def move(self, key: str, reason: str, now: float) -> None:
        self.ledger.forget(key)
        self.mark_moving(key, now)  # any request of it still to come repins
        tunnel = self.tunnels.pop(key, None)
        if tunnel is not None and not tunnel.ended:
            tunnel.close(to_client=TO_CLIENT, to_backend=to_backend())
        self.moves[reason] = self.moves.get(reason, 0) + 1
        self.metrics.rebalance_moves.labels(self.pool_name, reason).inc()

    def status(self) -> dict[str, Any]:
        plan = self.last_plan
        return {
            "enabled": self.rules.enabled,
            "bound": self.rules.bound,
            "rate": self.rules.rate,
            "spread": round(plan.spread, 3) if plan else None,
            "blocked": plan.blocked if plan else None,
            "over_since": self.planner.over_since,
            "moves": dict(self.moves),
            "moving": len(self.moving),
            "tunnels": len(self.tunnels),
            "history": [[round(t, 1), c] for t, c in self.history[-60:]],
        }


def _loop_time() -> float | None:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return None


async def run(pools: Any) -> None:
    """Tick every pool's sessions once a second, for the proxy's lifetime (``pools()`` returns
    the current runtimes: a reload may have replaced them)."""
    while True:
        await asyncio.sleep(TICK)
        now = time.time()
        for runtime in list(pools()):
            sessions = getattr(runtime, "sessions", None)
            if sessions is None:
                continue
            try:
                sessions.tick(now)
            except Exception:  # a bug here must not stop the ticks of the other pools
                log.exception("pool %s: session tick failed", runtime.name)
