"""SANS-IO: the balancer interface and the factory that maps a spec's ``balance`` to one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from limpet.pool.model import BackendView, PoolSnapshot


class Balancer(Protocol):
    """Choose one of ``candidates`` (already filtered: each may take a new session)."""

    name: str

    def choose(
        self, candidates: Sequence[BackendView], pool: PoolSnapshot
    ) -> BackendView | None: ...


def build_balancer(name: str, *, rand: Callable[[int], int] | None = None) -> Balancer:
    """``round-robin``, ``least-connections``, ``power-of-two`` (by open connections),
    ``least-sessions`` or ``power-of-two-sessions`` (by sessions: limpet.pool.sessions);
    ``rand(n)`` -> 0..n-1."""
    from limpet.balancing.least_connections import LeastConnections, LeastSessions
    from limpet.balancing.round_robin import RoundRobin
    from limpet.balancing.two_choices import PowerOfTwoChoices, PowerOfTwoSessions

    if name == "round-robin":
        return RoundRobin()
    if name == "least-connections":
        return LeastConnections()
    if name == "power-of-two":
        return PowerOfTwoChoices(rand=rand)
    if name == "least-sessions":
        return LeastSessions()
    if name == "power-of-two-sessions":
        return PowerOfTwoSessions(rand=rand)
    raise ValueError(
        f"unknown balance {name!r}: expected round-robin, least-connections, power-of-two, "
        "least-sessions or power-of-two-sessions"
    )
