"""The rebalance planner: spread bound, hold time, rate, cap in flight, longest-idle first,
nothing off draining backends, nothing in panic or with a never-seen-up backend."""

from __future__ import annotations

import collections
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from limpet.pool.model import BackendState
from limpet.pool.rebalance import BackendFacts, Planner, RebalanceRules, spread_of
from limpet.pool.sessions import SessionFact

H, D, E = BackendState.HEALTHY, BackendState.DRAINING, BackendState.EJECTED
ON = RebalanceRules(enabled=True, hold=5.0, rate=1000.0, max_moving=1.0, settle=1.0)


def backends(*specs: tuple[str, BackendState] | str) -> list[BackendFacts]:
    out = []
    for spec in specs:
        bid, state = (spec, H) if isinstance(spec, str) else spec
        out.append(BackendFacts(bid, state))
    return out


def sessions(counts: dict[str, int], *, tunnel: bool = True) -> list[SessionFact]:
    return [
        SessionFact(f"{b}-{i}", b, float(i), tunnel) for b, n in counts.items() for i in range(n)
    ]


def after_hold(planner: Planner, bs: list[BackendFacts], ss: list[SessionFact], **kw: object):  # type: ignore[no-untyped-def]
    planner.plan(bs, ss, now=0.0, **kw)  # type: ignore[arg-type]
    return planner.plan(bs, ss, now=10.0, **kw)  # type: ignore[arg-type]


def test_a_scale_up_moves_the_old_backends_down_to_their_share() -> None:
    bs = backends("a", "b", "c", "d")
    plan = after_hold(Planner(ON), bs, sessions({"a": 50, "b": 50}))
    moved = collections.Counter(m.backend for m in plan.moves)
    assert moved == {"a": 25, "b": 25}
    assert plan.spread == pytest.approx(2.0)
    assert all(m.reason == "spread" for m in plan.moves)


def test_twin_rebalance_off_moves_nothing() -> None:
    bs = backends("a", "b", "c", "d")
    plan = after_hold(Planner(RebalanceRules()), bs, sessions({"a": 50, "b": 50}))
    assert plan.moves == () and plan.blocked == "disabled"


def test_within_the_bound_nothing_moves() -> None:
    plan = after_hold(Planner(ON), backends("a", "b"), sessions({"a": 11, "b": 9}))
    assert plan.moves == () and plan.blocked is None


def test_it_waits_for_the_hold_time_unless_forced() -> None:
    planner = Planner(ON)
    bs, ss = backends("a", "b"), sessions({"a": 20, "b": 0})
    assert planner.plan(bs, ss, now=0.0).blocked == "holding"
    assert planner.plan(bs, ss, now=4.9).blocked == "holding"
    assert planner.plan(bs, ss, now=5.0).moves
    forced = Planner(ON).plan(bs, ss, now=0.0, force=True)
    assert forced.moves and all(m.reason == "admin" for m in forced.moves)


def test_dropping_under_the_bound_restarts_the_hold() -> None:
    planner = Planner(ON)
    bs = backends("a", "b")
    planner.plan(bs, sessions({"a": 20, "b": 0}), now=0.0)
    planner.plan(bs, sessions({"a": 10, "b": 10}), now=3.0)
    assert planner.plan(bs, sessions({"a": 20, "b": 0}), now=6.0).blocked == "holding"


def test_the_rate_is_a_token_bucket_per_pool() -> None:
    rules = RebalanceRules(enabled=True, hold=0.0, rate=5.0, max_moving=1.0, settle=0.0)
    planner = Planner(rules)
    bs, ss = backends("a", "b"), sessions({"a": 100, "b": 0})
    assert len(planner.plan(bs, ss, now=0.0).moves) == 5
    assert planner.plan(bs, ss, now=0.1).blocked == "rate"
    assert len(planner.plan(bs, ss, now=1.1).moves) == 5


def test_the_fraction_in_flight_is_capped() -> None:
    rules = RebalanceRules(enabled=True, hold=0.0, rate=1000.0, max_moving=0.1, settle=5.0)
    planner = Planner(rules)
    bs, ss = backends("a", "b"), sessions({"a": 100, "b": 0})
    assert len(planner.plan(bs, ss, now=0.0).moves) == 10
    assert planner.plan(bs, ss, now=1.0).blocked == "in-flight"
    assert len(planner.plan(bs, ss, now=5.0).moves) == 10  # the first ones settled


def test_longest_idle_first() -> None:
    ss = [SessionFact(f"s{i}", "a", float(i), True) for i in range(10)]
    rules = RebalanceRules(enabled=True, hold=0.0, rate=2.0, max_moving=1.0)
    plan = Planner(rules).plan(backends("a", "b"), ss, now=0.0)
    assert [m.key for m in plan.moves] == ["s9", "s8"]


def test_nothing_moves_off_a_draining_backend() -> None:
    bs = backends(("a", D), "b", "c")
    plan = after_hold(Planner(ON), bs, sessions({"a": 90, "b": 30, "c": 0}))
    assert all(m.backend != "a" for m in plan.moves)
    assert collections.Counter(m.backend for m in plan.moves) == {"b": 15}


@pytest.mark.parametrize(
    ("kw", "bs", "why"),
    [
        ({"panic": True}, backends("a", "b"), "panic"),
        ({}, [BackendFacts("a", H), BackendFacts("b", H, seen_up=False)], "unseen"),
        (
            {},
            [BackendFacts("a", H), BackendFacts("b", H), BackendFacts("c", D, seen_up=False)],
            "unseen",
        ),
    ],
)
def test_nothing_moves_in_panic_or_with_a_never_seen_up_backend(
    kw: dict[str, bool], bs: list[BackendFacts], why: str
) -> None:
    plan = after_hold(Planner(ON), bs, sessions({"a": 40, "b": 0}), **kw)
    assert plan.moves == () and plan.blocked == why


def test_an_ejected_never_seen_up_backend_does_not_block() -> None:
    bs = [BackendFacts("a", H), BackendFacts("b", H), BackendFacts("c", E, seen_up=False)]
    assert after_hold(Planner(ON), bs, sessions({"a": 40, "b": 0})).moves


def test_weights_set_the_shares() -> None:
    bs = [BackendFacts("a", H, weight=3), BackendFacts("b", H, weight=1)]
    assert after_hold(Planner(ON), bs, sessions({"a": 75, "b": 25})).moves == ()
    plan = after_hold(Planner(ON), bs, sessions({"a": 40, "b": 60}))
    assert collections.Counter(m.backend for m in plan.moves) == {"b": 35}


def test_bad_rules_are_refused() -> None:
    for kw in ({"bound": 0.9}, {"rate": 0}, {"max_moving": 0}, {"hold": -1}):
        with pytest.raises(ValueError):
            RebalanceRules(**kw)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(0, 80), min_size=2, max_size=6),
    st.lists(st.sampled_from([H, H, H, D, E]), min_size=6, max_size=6),
    st.floats(1.0, 50.0),
    st.floats(0.05, 1.0),
)
def test_planner_properties(
    counts: list[int], states: list[BackendState], rate: float, max_moving: float
) -> None:
    """Moves come only off HEALTHY backends over their share, within the rate and the cap,
    and repeating the plan (moved sessions placed on the emptiest) ends within the bound."""
    rules = RebalanceRules(enabled=True, hold=0.0, rate=rate, max_moving=max_moving, settle=0.5)
    ids = [f"b{i}" for i in range(len(counts))]
    bs = [BackendFacts(b, states[i]) for i, b in enumerate(ids)]
    live = {b: n for b, n in zip(ids, counts, strict=True)}
    planner = Planner(rules)
    healthy = [b.id for b in bs if b.state is H]
    now = 0.0
    for _ in range(1000):
        ss = sessions(live)
        total = sum(live[b] for b in healthy)
        plan = planner.plan(bs, ss, now=now)
        assert len(plan.moves) <= max(rate, 1.0)
        assert len(plan.moves) <= max(1, int(max_moving * total))
        for m in plan.moves:
            assert m.backend in healthy
            live[m.backend] -= 1
            target = min(healthy, key=lambda b: live[b])
            live[target] += 1
        if not plan.moves and plan.blocked in (None, "few"):
            break
        now += 1.0
    if len(healthy) >= 2 and sum(live[b] for b in healthy) >= rules.min_sessions:
        spread, shares = spread_of(live, dict.fromkeys(healthy, 1))
        # even, to the session: within the bound, or no backend above its share rounded up
        assert spread <= rules.bound or all(live[b] <= math.ceil(shares[b]) for b in healthy)


def test_the_sessions_are_listed_only_when_something_moves() -> None:
    listed: list[int] = []

    def lister() -> list[SessionFact]:
        listed.append(1)
        return sessions({"a": 30, "b": 10})

    bs = backends("a", "b")
    plan = Planner(ON).plan(bs, lister, now=0.0, counts={"a": 11, "b": 9})
    assert plan.moves == () and listed == []  # within the bound: the counts were enough
    # twin: over the bound, the sessions are listed to choose which ones move
    forced = Planner(ON).plan(bs, lister, now=0.0, counts={"a": 30, "b": 10}, force=True)
    assert forced.moves and listed == [1]
