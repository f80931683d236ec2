"""Canary groups: new sessions split by group weight, exactly; weight changes apply to new
sessions only; a group at 0 is evacuated by the planner (rollback / promote)."""

from __future__ import annotations

import collections

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from limpet.affinity.base import RequestFacts
from limpet.affinity.factory import build_policy
from limpet.affinity.spec import AffinitySpec
from limpet.balancing.base import build_balancer
from limpet.balancing.groups import CANARY, STABLE, GroupSplit, wrap
from limpet.pool.model import BackendState, BackendView, PoolSnapshot
from limpet.pool.rebalance import BackendFacts, Planner, RebalanceRules
from limpet.pool.sessions import SessionFact

GROUPS = {"s1": STABLE, "s2": STABLE, "c1": CANARY}


def snap(*ids: str) -> PoolSnapshot:
    views = tuple(BackendView(b, f"h:{i}") for i, b in enumerate(ids))
    return PoolSnapshot("p", views, loads={})


def split(percent: int) -> GroupSplit:
    return GroupSplit(
        build_balancer("round-robin"), GROUPS, {STABLE: 100 - percent, CANARY: percent}
    )


def test_ten_percent_is_one_new_session_in_ten() -> None:
    s, g = snap("s1", "s2", "c1"), split(10)
    chosen = collections.Counter(g.group_of(g.choose(s.eligible(), s).id) for _ in range(200))  # type: ignore[union-attr]
    assert chosen == {STABLE: 180, CANARY: 20}


def test_twin_without_groups_the_canary_gets_a_third() -> None:
    s, rr = snap("s1", "s2", "c1"), build_balancer("round-robin")
    chosen = collections.Counter(rr.choose(s.eligible(), s).id for _ in range(300))  # type: ignore[union-attr]
    assert chosen["c1"] == 100


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 100), st.integers(1, 300))
def test_any_weight_splits_within_one_session(percent: int, n: int) -> None:
    s, g = snap("s1", "s2", "c1"), split(percent)
    canary = sum(g.group_of(g.choose(s.eligible(), s).id) == CANARY for _ in range(n))  # type: ignore[union-attr]
    assert abs(canary - n * percent / 100) <= 1


def test_a_group_without_backends_hands_its_turn_over() -> None:
    s, g = snap("s1", "s2"), split(50)
    assert all(g.choose(s.eligible(), s).id in ("s1", "s2") for _ in range(10))  # type: ignore[union-attr]
    only_canary = snap("c1")
    assert split(0).choose(only_canary.eligible(), only_canary).id == "c1"  # type: ignore[union-attr]


def test_pinned_sessions_keep_their_backend_whatever_the_weights() -> None:
    policy = build_policy(AffinitySpec(mode="cookie"), secret=b"k", pool_name="p")
    g = wrap(policy, GROUPS, {STABLE: 90, CANARY: 10})
    s = snap("s1", "s2", "c1")
    cookies = []
    for _ in range(20):
        pick = policy.pick(RequestFacts("1.2.3.4"), s)
        assert pick.set_cookie is not None and pick.backend is not None
        cookies.append((pick.set_cookie.split(";")[0].split("=", 1)[1], pick.backend.id))
    assert sum(b == "c1" for _, b in cookies) == 2
    g.set_weights({STABLE: 0, CANARY: 100})
    for value, backend in cookies:
        again = policy.pick(RequestFacts("1.2.3.4", cookies={"limpet": value}), s)
        assert again.backend is not None and again.backend.id == backend


def test_effective_weights_and_evacuation() -> None:
    g = split(10)
    views = snap("s1", "s2", "c1").backends
    assert g.effective_weights(views) == {"s1": 45.0, "s2": 45.0, "c1": 10.0}
    assert g.evacuating() == frozenset()
    g.set_weights({STABLE: 100, CANARY: 0})
    assert g.evacuating() == {CANARY}
    with pytest.raises(ValueError):
        g.set_weights({STABLE: -1})


def test_client_ip_cannot_split() -> None:
    policy = build_policy(AffinitySpec(mode="client-ip"), secret=b"k")
    with pytest.raises(ValueError):
        wrap(policy, GROUPS, {STABLE: 90, CANARY: 10})


def facts(evacuate: str | None = None) -> list[BackendFacts]:
    return [
        BackendFacts("s1", BackendState.HEALTHY, 50.0),
        BackendFacts("s2", BackendState.HEALTHY, 50.0),
        BackendFacts("c1", BackendState.HEALTHY, 0.0, evacuate=evacuate),  # type: ignore[arg-type]
    ]


def sessions() -> list[SessionFact]:
    return [
        SessionFact(f"{b}-{i}", b, float(i), False) for b in ("s1", "s2") for i in range(20)
    ] + [SessionFact(f"c1-{i}", "c1", float(i), True) for i in range(6)]


def test_a_rollback_moves_every_canary_session_at_the_rate_even_with_rebalance_off() -> None:
    rules = RebalanceRules(enabled=False, rate=4.0, max_moving=1.0, settle=0.0)
    planner = Planner(rules)
    first = planner.plan(facts("rollback"), sessions(), now=0.0)
    assert [m.key for m in first.moves] == ["c1-5", "c1-4", "c1-3", "c1-2"]
    assert {m.reason for m in first.moves} == {"rollback"}
    assert len(planner.plan(facts("rollback"), sessions()[:-4], now=1.0).moves) == 2
    # twin: the canary at weight 0 but not evacuating: nothing moves (rebalance off)
    assert Planner(rules).plan(facts(None), sessions(), now=0.0).moves == ()
