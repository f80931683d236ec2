"""The live Pool: cached snapshots, live loads, health events, drain and discovery membership."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from limpet.pool.health import HealthEvent, HealthRules
from limpet.pool.model import BackendState
from limpet.pool.pool import Pool

E = HealthEvent


def make(n: int = 3, rules: HealthRules = HealthRules()) -> Pool:
    pool = Pool("web", [(f"b{i}", f"127.0.0.1:{9000 + i}") for i in range(n)], rules)
    for i in range(n):  # every member has answered once (a backend never seen up is not ejected)
        pool.record(f"b{i}", E.PROBE_OK, 0.0)
    return pool


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


def fail(pool: Pool, backend_id: str, times: int = 3, now: float = 0.0) -> None:
    for _ in range(times):
        pool.record(backend_id, E.PASSIVE_FAIL, now)


def test_passive_failures_eject_at_most_the_share_allowed() -> None:
    pool = make(10, HealthRules(max_ejection_percent=20))
    for i in range(10):
        fail(pool, f"b{i}")
    states = [b.state for b in pool.views()]
    assert states.count(BackendState.EJECTED) == 2
    # twin: with no limit, the same failures eject the whole pool
    unlimited = make(10, HealthRules(max_ejection_percent=100, panic_threshold=0))
    for i in range(10):
        fail(unlimited, f"b{i}")
    assert unlimited.snapshot().eligible() == ()


def test_at_least_one_backend_may_always_be_ejected() -> None:
    pool = make(3, HealthRules(max_ejection_percent=0))
    fail(pool, "b0")
    fail(pool, "b1")
    assert [b.state for b in pool.views()].count(BackendState.EJECTED) == 1


def test_probe_ejections_are_not_limited() -> None:
    pool = make(3)
    for i in range(3):
        for _ in range(3):
            pool.record(f"b{i}", E.PROBE_FAIL, 0.0)
    assert pool.snapshot().eligible() == ()  # probes saw them all down: a clear 503
    assert not pool.snapshot().panic or pool.snapshot().eligible() == ()


def test_panic_offers_passively_ejected_backends_again() -> None:
    pool = make(4, HealthRules(max_ejection_percent=100, panic_threshold=50))
    fail(pool, "b0")
    assert not pool.snapshot().panic and len(pool.snapshot().eligible()) == 3
    fail(pool, "b1")
    assert not pool.snapshot().panic  # 2 of 4 healthy: not below 50 %
    fail(pool, "b2")
    snap = pool.snapshot()
    assert snap.panic
    assert [b.id for b in snap.eligible()] == ["b0", "b1", "b2", "b3"]
    # the true states stay visible for status pages
    assert [b.state for b in pool.views()].count(BackendState.EJECTED) == 3
    # a probe that confirms b0 down takes it out of the panic set
    pool.record("b0", E.PROBE_FAIL, 0.0)
    assert [b.id for b in pool.snapshot().eligible()] == ["b1", "b2", "b3"]


def test_panic_does_not_offer_drained_backends() -> None:
    pool = make(2, HealthRules(max_ejection_percent=100))
    fail(pool, "b0")
    pool.drain("b0")
    fail(pool, "b1")
    assert [b.id for b in pool.snapshot().eligible()] == ["b1"]


@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),
            st.sampled_from([E.PASSIVE_FAIL, E.PASSIVE_OK, E.TICK]),
            st.floats(0, 100),
        ),
        max_size=120,
    ),
    st.integers(0, 100),
)
def test_passive_failures_alone_never_empty_a_pool(
    events: list[tuple[int, HealthEvent, float]], percent: int
) -> None:
    """Whatever a client makes the backends answer, some backend still takes new sessions."""
    pool = make(6, HealthRules(max_ejection_percent=percent))
    budget = max(1, 6 * percent // 100)
    for index, event, now in sorted(events, key=lambda e: e[2]):
        pool.record(f"b{index}", event, now)
        ejected = sum(1 for b in pool.backends() if b.status.passively_ejected)
        assert ejected <= budget
        assert pool.snapshot().eligible(), pool


def test_panic_offers_overloaded_backends_but_not_refused_ones() -> None:
    """One replica died (its probes are refused); the survivor's probes time out under the
    clients that moved to it. Ejected both, the pool in panic still offers the survivor."""
    pool = make(2)
    for _ in range(3):
        pool.record("b0", E.PROBE_FAIL, 0.0)
        pool.record("b1", E.PROBE_SLOW, 0.0)
    assert [b.state for b in pool.views()] == [BackendState.EJECTED, BackendState.EJECTED]
    snap = pool.snapshot()
    assert snap.panic
    assert [b.id for b in snap.eligible()] == ["b1"]
    # the survivor's next probe is refused: it is down after all, and out of the panic set
    pool.record("b1", E.PROBE_FAIL, 0.0)
    assert pool.snapshot().eligible() == ()
