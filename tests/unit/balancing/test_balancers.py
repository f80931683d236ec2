"""Round robin, least connections and power of two choices over plain snapshots."""

from __future__ import annotations

import collections
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limpet.balancing.base import build_balancer
from limpet.balancing.least_connections import LeastConnections
from limpet.balancing.round_robin import RoundRobin
from limpet.balancing.two_choices import PowerOfTwoChoices
from limpet.pool.model import BackendView, PoolSnapshot


def snapshot(n: int, loads: dict[str, int] | None = None) -> PoolSnapshot:
    views = tuple(BackendView(f"b{i}", f"127.0.0.1:{9000 + i}") for i in range(n))
    return PoolSnapshot("web", views, loads=loads if loads is not None else {})


def test_round_robin_cycles_in_order() -> None:
    snap = snapshot(3)
    rr = RoundRobin()
    chosen = [rr.choose(snap.backends, snap) for _ in range(7)]
    assert [b.id for b in chosen if b] == ["b0", "b1", "b2", "b0", "b1", "b2", "b0"]


def test_round_robin_survives_a_shrinking_list() -> None:
    snap = snapshot(3)
    rr = RoundRobin()
    rr.choose(snap.backends, snap)
    rr.choose(snap.backends, snap)
    rr.choose(snap.backends, snap)
    assert rr.choose(snap.backends[:1], snap) is snap.backends[0]


@pytest.mark.parametrize("name", ["round-robin", "least-connections", "power-of-two"])
def test_empty_candidates_give_none(name: str) -> None:
    assert build_balancer(name).choose((), snapshot(0)) is None


def test_unknown_balancer_is_refused() -> None:
    with pytest.raises(ValueError, match="round-robin"):
        build_balancer("random")


def test_least_connections_reads_live_loads() -> None:
    loads = {"b0": 5, "b1": 1, "b2": 3}
    snap = snapshot(3, loads)
    lc = LeastConnections()
    assert lc.choose(snap.backends, snap).id == "b1"  # type: ignore[union-attr]
    loads["b1"] = 9  # the same snapshot sees the change
    assert lc.choose(snap.backends, snap).id == "b2"  # type: ignore[union-attr]


def test_least_connections_rotates_ties() -> None:
    snap = snapshot(4)
    lc = LeastConnections()
    counts = collections.Counter(lc.choose(snap.backends, snap).id for _ in range(400))  # type: ignore[union-attr]
    assert counts == {"b0": 100, "b1": 100, "b2": 100, "b3": 100}


def test_least_connections_evens_out_when_sessions_stay_open() -> None:
    loads: dict[str, int] = {"b0": 10, "b1": 0, "b2": 0}
    snap = snapshot(3, loads)
    lc = LeastConnections()
    for _ in range(50):
        chosen = lc.choose(snap.backends, snap)
        assert chosen is not None
        loads[chosen.id] += 1
    assert max(loads.values()) - min(loads.values()) <= 1
    # twin: round robin ignores the load and keeps the imbalance
    loads_rr: dict[str, int] = {"b0": 10, "b1": 0, "b2": 0}
    snap_rr = snapshot(3, loads_rr)
    rr = RoundRobin()
    for _ in range(50):
        chosen = rr.choose(snap_rr.backends, snap_rr)
        assert chosen is not None
        loads_rr[chosen.id] += 1
    assert max(loads_rr.values()) - min(loads_rr.values()) > 1


@given(st.lists(st.integers(0, 100), min_size=2, max_size=20), st.data())
def test_power_of_two_never_picks_the_worse_of_its_two(
    loads_list: list[int], data: st.DataObject
) -> None:
    loads = {f"b{i}": load for i, load in enumerate(loads_list)}
    snap = snapshot(len(loads_list), loads)
    draws = iter(data.draw(st.lists(st.integers(0, 10**6), min_size=2, max_size=2)))
    seen: list[int] = []

    def rand(n: int) -> int:
        value = next(draws) % n
        seen.append(value)
        return value

    chosen = PowerOfTwoChoices(rand=rand).choose(snap.backends, snap)
    assert chosen is not None
    i, j = seen[0], seen[1] + (1 if seen[1] >= seen[0] else 0)
    assert i != j
    assert loads[chosen.id] == min(loads[f"b{i}"], loads[f"b{j}"])


def test_power_of_two_spreads() -> None:
    counter = itertools.count()
    snap = snapshot(5, {})
    p2c = PowerOfTwoChoices(rand=lambda n: next(counter) * 7 % n)
    counts = collections.Counter(p2c.choose(snap.backends, snap).id for _ in range(500))  # type: ignore[union-attr]
    assert set(counts) == {f"b{i}" for i in range(5)}
