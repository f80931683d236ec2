"""The backend health state machine: its table, thresholds, expiry and drain rules."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limpet.pool.health import (
    TRANSITIONS,
    Health,
    HealthEvent,
    HealthRules,
    HealthStatus,
    advance,
    describe,
)
from limpet.pool.model import BackendState

RULES = HealthRules(rise=2, fall=3, passive_failures=3, eject_seconds=10.0)
E = HealthEvent
SEEN = HealthStatus(seen_up=True)  # a backend that has been up once: thresholds apply in full


def run(
    events: list[HealthEvent], status: HealthStatus | None = None, now: float = 0.0
) -> HealthStatus:
    status = status or SEEN
    for event in events:
        status = advance(status, event, RULES, now)
    return status


def test_table_covers_every_health_and_event() -> None:
    assert set(TRANSITIONS) == set(itertools.product(Health, HealthEvent))


@pytest.mark.parametrize(("health", "event"), list(TRANSITIONS))
@pytest.mark.parametrize("draining", [False, True])
def test_every_transition_keeps_drain_unless_it_is_a_drain_event(
    health: Health, event: HealthEvent, draining: bool
) -> None:
    before = HealthStatus(health=health, draining=draining, ejected_until=5.0, seen_up=True)
    after = advance(before, event, RULES, now=0.0)
    if event is E.DRAIN:
        assert after.draining
    elif event is E.UNDRAIN:
        assert not after.draining
    else:
        assert after.draining is draining, describe()
    # from zeroed counters no single event reaches a threshold (all >= 2 here but
    # passive_failures=3), and the deadline (5.0) is not reached at now=0
    if event is not E.TICK:
        assert after.health is health


@pytest.mark.parametrize(
    ("events", "state"),
    [
        ([], BackendState.HEALTHY),
        ([E.PROBE_FAIL] * 2, BackendState.HEALTHY),
        ([E.PROBE_FAIL] * 3, BackendState.EJECTED),
        (
            [E.PROBE_FAIL, E.PROBE_FAIL, E.PROBE_OK, E.PROBE_FAIL, E.PROBE_FAIL],
            BackendState.HEALTHY,
        ),
        ([E.PROBE_FAIL] * 3 + [E.PROBE_OK], BackendState.EJECTED),
        ([E.PROBE_FAIL] * 3 + [E.PROBE_OK] * 2, BackendState.HEALTHY),
        ([E.PROBE_FAIL] * 3 + [E.PROBE_OK, E.PROBE_FAIL, E.PROBE_OK], BackendState.EJECTED),
        ([E.PASSIVE_FAIL] * 2, BackendState.HEALTHY),
        ([E.PASSIVE_FAIL] * 3, BackendState.EJECTED),
        ([E.PASSIVE_FAIL, E.PASSIVE_FAIL, E.PASSIVE_OK, E.PASSIVE_FAIL], BackendState.HEALTHY),
        ([E.DRAIN], BackendState.DRAINING),
        ([E.DRAIN, E.UNDRAIN], BackendState.HEALTHY),
        ([E.DRAIN] + [E.PROBE_OK] * 5, BackendState.DRAINING),
        ([E.DRAIN] + [E.PROBE_FAIL] * 3, BackendState.EJECTED),
        ([E.DRAIN] + [E.PROBE_FAIL] * 3 + [E.PROBE_OK] * 2, BackendState.DRAINING),
        ([E.PROBE_FAIL] * 3 + [E.DRAIN, E.PROBE_OK, E.PROBE_OK], BackendState.DRAINING),
        ([E.PASSIVE_FAIL] * 3 + [E.TICK], BackendState.EJECTED),  # deadline not reached at t=0
    ],
)
def test_sequences(events: list[HealthEvent], state: BackendState) -> None:
    assert run(events).state is state


def test_passive_ejection_expires_after_eject_seconds() -> None:
    ejected = run([E.PASSIVE_FAIL] * 3, now=100.0)
    assert ejected.state is BackendState.EJECTED
    assert ejected.ejected_until == 110.0
    assert advance(ejected, E.TICK, RULES, now=109.9).state is BackendState.EJECTED
    back = advance(ejected, E.TICK, RULES, now=110.0)
    assert back.state is BackendState.HEALTHY
    assert back == SEEN


def test_probe_ejection_does_not_expire() -> None:
    ejected = run([E.PROBE_FAIL] * 3)
    assert ejected.ejected_until is None
    assert advance(ejected, E.TICK, RULES, now=1e9).state is BackendState.EJECTED


def test_failing_probe_cancels_passive_expiry() -> None:
    ejected = run([E.PASSIVE_FAIL] * 3, now=0.0)
    probed = advance(ejected, E.PROBE_FAIL, RULES, now=1.0)
    assert advance(probed, E.TICK, RULES, now=1e9).state is BackendState.EJECTED


def test_late_passive_reports_while_ejected_change_nothing() -> None:
    ejected = run([E.PASSIVE_FAIL] * 3, now=0.0)
    assert run([E.PASSIVE_FAIL, E.PASSIVE_OK] * 3, ejected) == ejected


@given(st.lists(st.sampled_from(list(HealthEvent)), max_size=40), st.floats(0, 1e6))
def test_probes_never_undo_a_drain(events: list[HealthEvent], now: float) -> None:
    status = HealthStatus(draining=True)
    for event in events:
        if event in (E.DRAIN, E.UNDRAIN):
            continue
        status = advance(status, event, RULES, now)
        assert status.state in (BackendState.DRAINING, BackendState.EJECTED)


@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6))
def test_thresholds_are_exact(rise: int, fall: int, passive: int) -> None:
    rules = HealthRules(rise=rise, fall=fall, passive_failures=passive)
    status = SEEN
    for i in range(fall):
        assert status.state is BackendState.HEALTHY, i
        status = advance(status, E.PROBE_FAIL, rules, 0.0)
    assert status.state is BackendState.EJECTED
    for _ in range(rise):
        assert status.state is BackendState.EJECTED
        status = advance(status, E.PROBE_OK, rules, 0.0)
    assert status.state is BackendState.HEALTHY
    for _ in range(passive):
        assert status.state is BackendState.HEALTHY
        status = advance(status, E.PASSIVE_FAIL, rules, 0.0)
    assert status.state is BackendState.EJECTED


def test_a_backend_never_seen_up_is_not_ejected_by_passive_failures() -> None:
    starting = run([E.PASSIVE_FAIL] * 10, HealthStatus())
    assert starting.state is BackendState.HEALTHY and not starting.seen_up
    # twin: once it has been up, the same failures eject it
    assert run([E.PROBE_OK] + [E.PASSIVE_FAIL] * 3, HealthStatus()).state is BackendState.EJECTED


def test_a_backend_never_seen_up_comes_in_on_its_first_ok_probe() -> None:
    down = run([E.PROBE_FAIL] * 3, HealthStatus())
    assert down.state is BackendState.EJECTED  # probes still eject a backend that is not there
    up = advance(down, E.PROBE_OK, RULES, 0.0)
    assert up.state is BackendState.HEALTHY and up.seen_up
    # twin: a backend that was up before needs `rise` OKs to come back (it may be flapping)
    again = run([E.PROBE_FAIL] * 3 + [E.PROBE_OK], up)
    assert again.state is BackendState.EJECTED


def test_an_exchange_that_succeeds_counts_as_seen_up() -> None:
    assert advance(HealthStatus(), E.PASSIVE_OK, RULES, 0.0).seen_up


def test_no_ejection_budget_counts_but_does_not_eject() -> None:
    status = SEEN
    for _ in range(5):
        status = advance(status, E.PASSIVE_FAIL, RULES, 0.0, may_eject=False)
    assert status.state is BackendState.HEALTHY and status.passive_fails == 5
    status = advance(status, E.PASSIVE_FAIL, RULES, 0.0)  # the budget allows it again
    assert status.state is BackendState.EJECTED and status.passively_ejected


@pytest.mark.parametrize("field", ["max_ejection_percent", "panic_threshold"])
@pytest.mark.parametrize("value", [-1, 101])
def test_rules_reject_percentages_out_of_range(field: str, value: int) -> None:
    with pytest.raises(ValueError):
        HealthRules(**{field: value})


@pytest.mark.parametrize("field", ["rise", "fall", "passive_failures"])
def test_rules_reject_zero_thresholds(field: str) -> None:
    with pytest.raises(ValueError):
        HealthRules(**{field: 0})


def test_describe_prints_every_row() -> None:
    text = describe()
    assert text.count("\n") == len(TRANSITIONS) + 1
    assert "| down | tick | -> up when expired" in text


def test_the_docs_print_the_current_table() -> None:
    doc = (Path(__file__).parents[3] / "docs" / "affinity.md").read_text()
    start = doc.index("<!-- health-table:start -->\n") + len("<!-- health-table:start -->\n")
    end = doc.index("<!-- health-table:end -->")
    assert doc[start:end].strip() == describe()


def test_any_answer_counts_as_seen_up_without_resetting_failures() -> None:
    status = run([E.PASSIVE_FAIL, E.ANSWERED, E.PASSIVE_FAIL], HealthStatus())
    assert status.seen_up and status.passive_fails == 2
    assert advance(status, E.PASSIVE_FAIL, RULES, 0.0).state is BackendState.EJECTED


def test_a_slow_probe_ejects_like_a_failed_one_and_marks_the_backend_overloaded() -> None:
    down = run([E.PROBE_SLOW] * RULES.fall)
    assert down.state is BackendState.EJECTED
    assert down.overloaded and down.panic_candidate
    # twin: refused probes eject it the same way, and it is not a panic candidate
    refused = run([E.PROBE_FAIL] * RULES.fall)
    assert refused.state is BackendState.EJECTED
    assert not refused.overloaded and not refused.panic_candidate


@given(st.lists(st.sampled_from([E.PROBE_SLOW, E.PROBE_FAIL, E.PROBE_OK, E.TICK]), max_size=30))
def test_the_last_failed_probe_says_whether_a_backend_is_overloaded(
    events: list[HealthEvent],
) -> None:
    status = run(events)
    failed = [e for e in events if e in (E.PROBE_SLOW, E.PROBE_FAIL)]
    if status.health is Health.DOWN:
        assert failed, "only probes eject here"
        assert status.overloaded is (failed[-1] is E.PROBE_SLOW)
        assert status.panic_candidate is status.overloaded  # no passive ejection in play
    else:
        assert not status.panic_candidate
