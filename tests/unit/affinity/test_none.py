"""Affinity none: no pin, no cookie; each request is balanced afresh."""

from __future__ import annotations

import collections

from limpet.affinity.base import PickReason, RequestFacts
from limpet.affinity.none import NonePolicy
from limpet.balancing.least_connections import LeastConnections
from limpet.balancing.round_robin import RoundRobin
from limpet.pool.pool import Pool


def make_pool(n: int = 3) -> Pool:
    return Pool("web", [(f"b{i}", f"127.0.0.1:{9000 + i}") for i in range(n)])


def test_round_robin_spreads_one_client_everywhere() -> None:
    pol, pool = NonePolicy(RoundRobin()), make_pool(3)
    picks = [
        pol.pick(RequestFacts("127.0.0.1", cookies={"limpet": "x"}), pool.snapshot())
        for _ in range(30)
    ]
    assert collections.Counter(p.backend.id for p in picks if p.backend) == {
        "b0": 10,
        "b1": 10,
        "b2": 10,
    }
    assert all(p.reason is PickReason.NEW and p.set_cookie is None for p in picks)


def test_skips_draining_and_ejected() -> None:
    pol, pool = NonePolicy(RoundRobin()), make_pool(3)
    pool.drain("b1")
    assert {pol.pick(RequestFacts("x"), pool.snapshot()).backend.id for _ in range(10)} == {
        "b0",
        "b2",
    }  # type: ignore[union-attr]


def test_least_connections_follows_live_counts() -> None:
    pol, pool = NonePolicy(LeastConnections()), make_pool(3)
    snap = pool.snapshot()
    pool.opened("b0")
    pool.opened("b2")
    assert pol.pick(RequestFacts("x"), snap).backend.id == "b1"  # type: ignore[union-attr]


def test_no_backend() -> None:
    pol, pool = NonePolicy(RoundRobin()), make_pool(1)
    pool.drain("b0")
    pick = pol.pick(RequestFacts("x"), pool.snapshot())
    assert pick.backend is None and pick.reason is PickReason.NO_BACKEND


def test_a_pick_names_the_view_of_the_snapshot_it_was_made_from() -> None:
    # the policy remembers one Pick per backend; a new snapshot's views are new objects (with
    # their own state and load), and the pick names those, never a remembered older one
    pol, pool = NonePolicy(RoundRobin()), make_pool(3)
    for change in (None, "opened", "drain", "undrain"):
        if change == "opened":
            pool.opened("b0")
        elif change == "drain":
            pool.drain("b2")
        elif change == "undrain":
            pool.undrain("b2")
        snap = pool.snapshot()
        for _ in range(6):
            pick = pol.pick(RequestFacts("x"), snap)
            assert pick.reason is PickReason.NEW and pick.set_cookie is None
            assert any(pick.backend is b for b in snap.backends), (change, pick)
