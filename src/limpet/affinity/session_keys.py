"""SANS-IO: which session a request belongs to, and how a session that was moved is answered.

The session accounting (limpet.pool.sessions) counts sessions by key; the rebalance planner
moves them by key. What the key is depends on the affinity, so each mode gets one fixed hook,
chosen once per pool (``for_policy``), not an ``if`` per request:

- ``engineio``: the sid token the client sends (``<sid>.<tag>.<mac>``). A moved session is
  answered like an unknown one, socket.io's own ``400 Session ID unknown``: the client
  handshakes again at once, and the new session is placed by load (a fresh sid).
- ``cookie``: the affinity cookie's value. A moved session is repinned: the policy picks again
  without the old backend and hands back a fresh cookie.
- the others (``none``, ``client-ip``, ``hash``) have no session the proxy could move: no key.
"""

from __future__ import annotations

from typing import Protocol

from limpet.affinity.base import AffinityPolicy, Pick, PickReason, RequestFacts
from limpet.pool.model import BackendState, PoolSnapshot


class SessionKeys(Protocol):
    """The session of a pinned request, and the pick that moves it elsewhere."""

    def key(self, facts: RequestFacts, pick: Pick) -> str | None: ...

    def new(self, pick: Pick) -> bool:
        """Whether a session placed by ``pick`` will come back with a key (is counted)."""
        ...

    def moved(self, facts: RequestFacts, pick: Pick, pool: PoolSnapshot) -> Pick: ...


class NoKeys:
    """Affinities without a movable session."""

    def key(self, facts: RequestFacts, pick: Pick) -> str | None:
        return None

    def new(self, pick: Pick) -> bool:
        return False

    def moved(self, facts: RequestFacts, pick: Pick, pool: PoolSnapshot) -> Pick:
        return pick


class EngineIOKeys:
    """The sid token is the key; a moved session gets REJECTED (-> 400 Session ID unknown)."""

    def key(self, facts: RequestFacts, pick: Pick) -> str | None:
        decision = getattr(pick, "decision", None)
        request = decision.request if decision is not None else None
        return request.sid if request is not None else None

    def new(self, pick: Pick) -> bool:
        # a handshake on the Engine.IO path (the fallback's pages and APIs are no session)
        return getattr(pick, "decision", None) is not None

    def moved(self, facts: RequestFacts, pick: Pick, pool: PoolSnapshot) -> Pick:
        from limpet.affinity.engineio import EngineIOPick

        decision = getattr(pick, "decision", None)
        rejected = Pick(None, PickReason.REJECTED)
        if decision is None:
            return rejected
        return EngineIOPick(None, PickReason.REJECTED, decision=decision._replace(pick=rejected))


class CookieKeys:
    """The affinity cookie's value is the key; a moved session is picked again elsewhere."""

    def __init__(self, cookie_name: str, policy: AffinityPolicy) -> None:
        self.cookie_name = cookie_name
        self.policy = policy

    def key(self, facts: RequestFacts, pick: Pick) -> str | None:
        return facts.cookies.get(self.cookie_name)

    def new(self, pick: Pick) -> bool:
        return pick.set_cookie is not None

    def moved(self, facts: RequestFacts, pick: Pick, pool: PoolSnapshot) -> Pick:
        old = pick.backend
        if old is None:
            return pick
        # the same pool without the old backend: the policy repins with a fresh cookie
        from dataclasses import replace

        without = replace(
            pool,
            backends=tuple(
                replace(b, state=BackendState.EJECTED) if b.id == old.id else b
                for b in pool.backends
            ),
        )
        again = self.policy.pick(facts, without)
        return again if again.backend is not None else pick


def for_policy(policy: AffinityPolicy) -> SessionKeys:
    """The hook of ``policy``'s mode."""
    name = policy.name
    if name == "engineio":
        return EngineIOKeys()
    cookie_name = getattr(policy, "cookie_name", None)
    if name == "cookie" and isinstance(cookie_name, str):
        return CookieKeys(cookie_name, policy)
    return NoKeys()
