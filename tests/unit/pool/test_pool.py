"""The live Pool: cached snapshots, live loads, health events, drain and discovery membership."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from limpet.pool.health import HealthEvent, HealthRules
from limpet.pool.model import BackendState
from limpet.pool.pool import Pool

E = HealthEvent


def make(n: int = 3) -> Pool:
    return Pool("web", [(f"b{i}", f"127.0.0.1:{9000 + i}") for i in range(n)], HealthRules())


def test_snapshot_is_cached_until_state_changes() -> None:
    pool = make()
    first = pool.snapshot()
    assert pool.snapshot() is first
    pool.opened("b0")
    pool.record("b0", E.PROBE_OK, 0.0)  # no state change
    pool.record("b0", E.PROBE_FAIL, 0.0)  # counted, not yet ejected
    assert pool.snapshot() is first
    for _ in range(2):
        pool.record("b0", E.PROBE_FAIL, 0.0)
    second = pool.snapshot()
    assert second is not first
    assert second.get("b0") is not None and second.get("b0").state is BackendState.EJECTED  # type: ignore[union-attr]
    assert [b.id for b in second.eligible()] == ["b1", "b2"]


def test_snapshots_read_live_loads_without_rebuilding() -> None:
    pool = make()
    snap = pool.snapshot()
    pool.opened("b1")
    pool.opened("b1")
    pool.opened("b2")
    assert (snap.load("b0"), snap.load("b1"), snap.load("b2")) == (0, 2, 1)
    pool.closed("b1")
    pool.closed("b1")
    pool.closed("b1")  # never below zero
    assert snap.load("b1") == 0
    assert pool.snapshot() is snap


def test_repr_shows_state_and_open_count() -> None:
    pool = make(2)
    for _ in range(12):
        pool.opened("b1")
    pool.drain("b1")
    assert repr(pool.get("b1")) == "Backend(id='b1', state=DRAINING, open=12)"
    assert "Backend(id='b0', state=HEALTHY, open=0)" in repr(pool)
    assert "state=DRAINING, open=12" in repr(pool.snapshot().get("b1"))


def test_record_unknown_backend_is_ignored() -> None:
    pool = make()
    snap = pool.snapshot()
    assert pool.record("gone", E.PASSIVE_FAIL, 0.0) is BackendState.EJECTED
    assert pool.snapshot() is snap


def test_passive_ejection_and_tick() -> None:
    pool = make()
    for _ in range(3):
        pool.record("b2", E.PASSIVE_FAIL, 100.0)
    assert pool.get("b2").state is BackendState.EJECTED  # type: ignore[union-attr]
    assert pool.next_deadline() == 110.0
    assert pool.tick(105.0) == []
    assert pool.tick(110.0) == ["b2"]
    assert pool.next_deadline() is None
    assert len(pool.snapshot().eligible()) == 3


def test_operator_drain_and_discovery_terminating_are_independent() -> None:
    pool = make()
    pool.drain("b0")
    pool.set_members([("b0", "127.0.0.1:9000", True), ("b1", "127.0.0.1:9001", False)], 0.0)
    pool.undrain("b0")  # discovery still says terminating
    assert pool.get("b0").state is BackendState.DRAINING  # type: ignore[union-attr]
    pool.set_members([("b0", "127.0.0.1:9000", False), ("b1", "127.0.0.1:9001", False)], 0.0)
    assert pool.get("b0").state is BackendState.HEALTHY  # type: ignore[union-attr]
    pool.drain("b1")
    pool.set_members([("b0", "127.0.0.1:9000", False), ("b1", "127.0.0.1:9001", False)], 0.0)
    assert pool.get("b1").state is BackendState.DRAINING  # type: ignore[union-attr]


def test_set_members_joins_drains_and_removes() -> None:
    pool = make()
    pool.opened("b2")
    before = pool.snapshot()
    pool.set_members(
        [
            ("b0", "127.0.0.1:9000", False),
            ("b1", "127.0.0.1:9001", True),
            ("b3", "127.0.0.2:1", False),
        ],
        0.0,
    )
    snap = pool.snapshot()
    assert snap is not before
    assert {b.id: b.state for b in snap.backends} == {
        "b0": BackendState.HEALTHY,
        "b1": BackendState.DRAINING,
        "b3": BackendState.HEALTHY,
    }
    assert "b2" not in pool and len(pool) == 3
    assert pool.loads["b2"] == 1  # still open: counted until closed
    pool.closed("b2")
    assert "b2" not in pool.loads
    # the same membership again changes nothing
    pool.set_members(
        [
            ("b0", "127.0.0.1:9000", False),
            ("b1", "127.0.0.1:9001", True),
            ("b3", "127.0.0.2:1", False),
        ],
        0.0,
    )
    assert pool.snapshot() is snap


def test_address_change_rebuilds_the_snapshot() -> None:
    pool = make(1)
    snap = pool.snapshot()
    pool.set_members([("b0", "127.0.0.9:1", False)], 0.0)
    assert pool.snapshot().get("b0").address == "127.0.0.9:1"  # type: ignore[union-attr]
    assert pool.snapshot() is not snap


def test_new_member_that_is_terminating_joins_draining() -> None:
    pool = make(0)
    pool.set_members([("x", "127.0.0.1:1", True)], 0.0)
    assert pool.snapshot().eligible() == ()
    assert pool.get("x").state is BackendState.DRAINING  # type: ignore[union-attr]


@given(st.lists(st.tuples(st.sampled_from(["b0", "b1", "b2"]), st.booleans()), max_size=60))
def test_loads_match_opened_minus_closed(ops: list[tuple[str, bool]]) -> None:
    pool = make()
    expected = {"b0": 0, "b1": 0, "b2": 0}
    for backend_id, is_open in ops:
        if is_open:
            pool.opened(backend_id)
            expected[backend_id] += 1
        else:
            pool.closed(backend_id)
            expected[backend_id] = max(0, expected[backend_id] - 1)
    snap = pool.snapshot()
    assert {b: snap.load(b) for b in expected} == expected
