"""The session ledger: counts by key, tunnels, placements, expiry, bounds; and the balancers
that place new sessions by it (least sessions, power of two by sessions, weighted)."""

from __future__ import annotations

import collections

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from limpet.balancing.base import build_balancer
from limpet.pool.model import BackendView, PoolSnapshot
from limpet.pool.pool import Pool
from limpet.pool.sessions import SessionLedger


def test_a_key_counts_once_however_often_it_is_touched() -> None:
    ledger = SessionLedger(window=10)
    for t in range(5):
        ledger.touch("a", "s1", float(t))
    ledger.touch("a", "s2", 5.0)
    assert ledger.counts == {"a": 2}


def test_quiet_keys_expire_after_the_window_but_held_ones_stay() -> None:
    ledger = SessionLedger(window=10)
    ledger.touch("a", "poll", 0.0)
    ledger.hold("a", "ws", 0.0)
    ledger.expire(9.0)
    assert ledger.count("a") == 2
    ledger.expire(10.5)
    assert ledger.count("a") == 1  # the tunnel keeps its key alive
    ledger.release("ws", 11.0)
    ledger.expire(20.0)
    assert ledger.count("a") == 1
    ledger.expire(21.5)
    assert ledger.count("a") == 0


def test_twin_without_hold_a_quiet_websocket_would_vanish() -> None:
    ledger = SessionLedger(window=10)
    ledger.touch("a", "ws", 0.0)
    ledger.expire(10.5)
    assert ledger.count("a") == 0


def test_a_placement_becomes_its_key_and_unconfirmed_ones_expire() -> None:
    ledger = SessionLedger(window=60, grace=5)
    ledger.placed("a", 0.0)
    ledger.placed("a", 0.0)
    assert ledger.count("a") == 2
    ledger.touch("a", "s1", 1.0)  # the first request with the minted sid
    assert ledger.count("a") == 2
    ledger.expire(5.0)  # the other handshake's client never came back
    assert ledger.count("a") == 1


def test_a_key_seen_on_another_backend_moves_its_count() -> None:
    ledger = SessionLedger()
    ledger.touch("a", "s", 0.0)
    ledger.touch("b", "s", 1.0)
    assert ledger.counts == {"a": 0, "b": 1}
    assert ledger.backend_of("s") == "b"


def test_forget_drops_a_moved_session_at_once() -> None:
    ledger = SessionLedger()
    ledger.hold("a", "s", 0.0)
    assert ledger.forget("s") == "a"
    assert ledger.count("a") == 0
    assert ledger.forget("s") is None


def test_keys_are_bounded_the_quietest_goes_first() -> None:
    ledger = SessionLedger(max_keys=3)
    ledger.hold("a", "held", 0.0)
    for i in range(5):
        ledger.touch("a", f"k{i}", float(i + 1))
    assert len(ledger) == 3
    assert ledger.backend_of("held") == "a"  # held keys are the last to go
    assert ledger.count("a") == 3


def test_sessions_report_idle_times_and_tunnels() -> None:
    ledger = SessionLedger()
    ledger.touch("a", "old", 0.0)
    ledger.hold("b", "ws", 5.0)
    facts = {f.key: f for f in ledger.sessions(8.0)}
    assert facts["old"].idle == 8.0 and not facts["old"].tunnel
    assert facts["ws"].backend == "b" and facts["ws"].tunnel


def test_pool_snapshots_share_the_live_counts_and_removal_drops_them() -> None:
    pool = Pool("p", [("a", "h:1"), ("b", "h:2")])
    snap = pool.snapshot()
    pool.sessions.touch("a", "s", 0.0)
    assert snap.sessions("a") == 1 and snap.sessions("b") == 0
    pool.set_members([("b", "h:2", False)], 0.0)
    assert pool.sessions.count("a") == 0


ops = st.lists(
    st.tuples(
        st.sampled_from(["touch", "hold", "release", "placed", "forget", "expire"]),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from([f"k{i}" for i in range(8)]),
        st.floats(0, 5),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_counts_never_go_negative_and_match_the_keys(
    steps: list[tuple[str, str, str, float]],
) -> None:
    """Without placements the counts are exactly the keys per backend; with them, at least."""
    ledger = SessionLedger(window=3, grace=2, max_keys=5)
    now = 0.0
    for op, backend, key, dt in steps:
        now += dt
        if op == "touch":
            ledger.touch(backend, key, now)
        elif op == "hold":
            ledger.hold(backend, key, now)
        elif op == "release":
            ledger.release(key, now)
        elif op == "placed":
            ledger.placed(backend, now)
        elif op == "forget":
            ledger.forget(key)
        else:
            ledger.expire(now)
        assert all(n >= 0 for n in ledger.counts.values())
        assert len(ledger) <= 5
    ledger.expire(now + 1000)
    keys = collections.Counter(f.backend for f in ledger.sessions(now))
    for backend in "abc":
        assert ledger.count(backend) == keys.get(backend, 0)


# -- placing new sessions by load ---------------------------------------------------------------


def snap(counts: dict[str, int], weights: dict[str, int] | None = None) -> PoolSnapshot:
    views = tuple(
        BackendView(b, f"h:{i}", weight=(weights or {}).get(b, 1)) for i, b in enumerate(counts)
    )
    return PoolSnapshot("p", views, loads={}, session_counts=counts)


def test_least_sessions_takes_the_emptiest_not_the_least_connected() -> None:
    s = snap({"a": 50, "b": 3, "c": 20})
    s = PoolSnapshot(
        "p", s.backends, loads={"a": 0, "b": 9, "c": 0}, session_counts=s.session_counts
    )
    assert build_balancer("least-sessions").choose(s.backends, s).id == "b"  # type: ignore[union-attr]
    # twin: by open connections the choice is another backend
    assert build_balancer("least-connections").choose(s.backends, s).id != "b"  # type: ignore[union-attr]


def test_least_sessions_is_weighted() -> None:
    s = snap({"a": 30, "b": 20}, weights={"a": 3, "b": 1})
    assert build_balancer("least-sessions").choose(s.backends, s).id == "a"  # type: ignore[union-attr]


# power of two: both samples are old ones 1 time in 6, so ~83 of 100 go to the new backends
@pytest.mark.parametrize(
    ("name", "least"), [("least-sessions", 100), ("power-of-two-sessions", 70)]
)
def test_a_scale_up_fills_the_new_backends_first(name: str, least: int) -> None:
    counts = {"old1": 100, "old2": 100, "new1": 0, "new2": 0}
    s = snap(counts)
    balancer = build_balancer(name)
    chosen = collections.Counter()
    for _ in range(100):
        b = balancer.choose(s.backends, s)
        assert b is not None
        chosen[b.id] += 1
        counts[b.id] += 1
    assert chosen["new1"] + chosen["new2"] >= least
    # twin: round robin gives the old backends half the new sessions
    rr = build_balancer("round-robin")
    rr_chosen = collections.Counter(rr.choose(s.backends, s).id for _ in range(100))  # type: ignore[union-attr]
    assert rr_chosen["old1"] + rr_chosen["old2"] == 50


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=2, max_size=6), st.integers(50, 300))
def test_least_sessions_keeps_any_weighted_pool_within_one_session_of_its_shares(
    weights: list[int], n: int
) -> None:
    ids = [f"b{i}" for i in range(len(weights))]
    counts = dict.fromkeys(ids, 0)
    s = snap(counts, dict(zip(ids, weights, strict=True)))
    balancer = build_balancer("least-sessions")
    for _ in range(n):
        b = balancer.choose(s.backends, s)
        assert b is not None
        counts[b.id] += 1
    total = sum(weights)
    for b, w in zip(ids, weights, strict=True):
        assert abs(counts[b] - n * w / total) <= max(weights) + 1


def test_engineio_defaults_to_least_sessions_and_others_to_round_robin() -> None:
    from limpet.affinity.spec import AffinitySpec

    assert AffinitySpec(mode="engineio").balancer == "least-sessions"
    assert AffinitySpec(mode="cookie").balancer == "round-robin"
    assert AffinitySpec(mode="engineio", balance="round-robin").balancer == "round-robin"
