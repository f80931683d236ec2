"""limpet.hub.admission: handshakes in flight are bounded, tickets come back (done, expiry),
Retry-After spreads the refused over the seconds that follow."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from limpet.hub.admission import Admission, Refusal


def test_past_the_limit_a_handshake_is_refused_until_a_ticket_comes_back() -> None:
    gate = Admission(2, hold=5.0)
    first, second = gate.admit(0.0), gate.admit(0.1)
    assert isinstance(first, int) and isinstance(second, int)
    assert gate.admit(0.2) == Refusal(1)
    gate.done(first)
    assert isinstance(gate.admit(0.3), int)
    assert gate.snapshot(0.3) == {
        "limit": 2,
        "in_flight": 2,
        "admitted": 3,
        "refused": 1,
        "expired": 0,
        "peak": 2,
    }
    assert gate.snapshot(5.2) == {
        "limit": 2,
        "in_flight": 1,
        "admitted": 3,
        "refused": 1,
        "expired": 1,
        "peak": 2,
    }


def test_twin_without_a_limit_everything_is_admitted() -> None:
    gate = Admission(0)
    assert all(isinstance(gate.admit(0.0), int) for _ in range(10_000))
    assert gate.refused == 0
    assert gate.peak == 10_000  # what a limit would have cut


def test_a_ticket_never_given_back_expires_after_hold() -> None:
    gate = Admission(1, hold=5.0)
    gate.admit(0.0)
    assert isinstance(gate.admit(4.9), Refusal)
    assert isinstance(gate.admit(5.0), int)
    assert gate.expired == 1


def test_done_is_idempotent_and_ignores_unknown_tickets() -> None:
    gate = Admission(1, hold=5.0)
    ticket = gate.admit(0.0)
    assert isinstance(ticket, int)
    gate.done(ticket)
    gate.done(ticket)
    gate.done(12345)
    assert gate.in_flight == 0 and isinstance(gate.admit(0.1), int)


def test_retry_after_spreads_the_refused_of_one_second_by_the_limit() -> None:
    gate = Admission(100, hold=60.0, max_retry_after=10)
    for _ in range(100):
        gate.admit(10.0)
    waits = [gate.admit(10.5) for _ in range(2000)]
    assert all(isinstance(w, Refusal) for w in waits)
    counts = {}
    for w in waits:
        assert isinstance(w, Refusal)
        counts[w.retry_after] = counts.get(w.retry_after, 0) + 1
    assert counts == {**{s: 100 for s in range(1, 10)}, 10: 1100}
    # the next second starts again at 1
    assert gate.admit(11.0) == Refusal(1)


@given(st.lists(st.tuples(st.sampled_from(["admit", "done"]), st.integers(0, 30)), max_size=200))
def test_in_flight_never_exceeds_the_limit_and_counts_add_up(ops: list[tuple[str, int]]) -> None:
    gate = Admission(5, hold=3.0)
    now = 0.0
    tickets: list[int] = []
    for op, n in ops:
        now += n / 10
        if op == "admit":
            verdict = gate.admit(now)
            if isinstance(verdict, int):
                tickets.append(verdict)
            else:
                assert 1 <= verdict.retry_after <= gate.max_retry_after
        elif tickets:
            ticket = tickets[n % len(tickets)]
            gate.done(ticket)
        assert gate.in_flight <= 5
    assert gate.admitted == len(tickets)
    done = gate.admitted - gate.in_flight - gate.expired
    assert done >= 0
