"""The downstream connection's state machine, as a table."""

from __future__ import annotations

import pytest

from limpet.proxy.states import (
    EX_LIVE,
    EX_RESPONSE_STARTED,
    EX_STEPS,
    EX_TRANSITIONS,
    TRANSITIONS,
    DownEvent,
    DownState,
    ExchangeStepError,
    ExEvent,
    ExState,
    StepError,
    advance,
    describe,
    ex_advance,
    ex_describe,
)


@pytest.mark.parametrize(("step", "after"), list(TRANSITIONS.items()), ids=str)
def test_every_listed_step(step: tuple[DownState, DownEvent], after: DownState) -> None:
    assert advance(*step) is after


def test_every_state_ends_closed_when_the_transport_is_lost() -> None:
    assert all(advance(s, DownEvent.LOST) is DownState.CLOSED for s in DownState)


def test_unlisted_steps_raise_as_the_exchange_table_does_and_closed_is_final() -> None:
    refused = [(s, e) for s in DownState for e in DownEvent if (s, e) not in TRANSITIONS]
    assert refused  # the table is not "anything goes"
    for state, event in refused:
        with pytest.raises(StepError, match=event.value):
            advance(state, event)
    assert all(advance(DownState.CLOSED, e) is DownState.CLOSED for e in DownEvent)


def test_a_tunnel_is_reached_only_through_an_upgrade_and_a_refusal_is_never_undone() -> None:
    sources = {s for (s, e), t in TRANSITIONS.items() if t is DownState.TUNNEL}
    assert sources == {DownState.UPGRADING, DownState.HALF_CLOSED}
    assert {t for (s, _), t in TRANSITIONS.items() if s is DownState.REFUSED} == {DownState.CLOSED}
    assert "reading" in describe()


# -- the exchange's table ------------------------------------------------------------------------

X, V = ExState, ExEvent


@pytest.mark.parametrize(("step", "after"), list(EX_TRANSITIONS.items()), ids=str)
def test_every_listed_exchange_step(step: tuple[ExState, ExEvent], after: ExState) -> None:
    assert ex_advance(*step) is after


def test_every_unlisted_exchange_step_raises() -> None:
    refused = [(s, e) for s in ExState for e in ExEvent if (s, e) not in EX_TRANSITIONS]
    assert refused  # the table is not "anything goes"
    for state, event in refused:
        with pytest.raises(ExchangeStepError, match=event.value):
            ex_advance(state, event)


def test_ended_exchange_states_are_final_and_every_live_one_can_end() -> None:
    final = set(ExState) - EX_LIVE - {X.TUNNEL}
    assert final == {X.DONE, X.LOCAL, X.ABORTED, X.CUT}
    assert not [s for (s, _) in EX_TRANSITIONS if s in final or s is X.TUNNEL]
    for state in EX_LIVE:
        assert ex_advance(state, V.ABORT) in {X.ABORTED, X.CUT}


def test_a_local_answer_is_possible_only_before_the_response_started() -> None:
    sources = {s for (s, e) in EX_TRANSITIONS if e is V.LOCAL}
    assert not sources & EX_RESPONSE_STARTED
    assert {t for (s, e), t in EX_TRANSITIONS.items() if s in EX_RESPONSE_STARTED} == {
        X.DONE,
        X.CUT,
    }


def test_the_response_timeout_state_is_entered_only_once_the_request_was_sent() -> None:
    assert {(s, e) for (s, e), t in EX_TRANSITIONS.items() if t is X.WAITING} == {
        (X.SENDING, V.SENT)
    }
    assert "queued" in ex_describe()


def test_a_full_exchange_walks_the_table() -> None:
    state = X.QUEUED
    for event in (V.START, V.ATTACH, V.SENT, V.INTERIM_HEAD, V.FINAL_HEAD, V.END):
        state = ex_advance(state, event)
    assert state is X.DONE


def test_the_per_state_steps_are_the_exchange_table() -> None:
    """EX_STEPS (what Exchange.step reads) holds the very steps of EX_TRANSITIONS, no other."""
    assert set(EX_STEPS) == set(ExState)
    flat = {(s, e): t for s, steps in EX_STEPS.items() for e, t in steps.items()}
    assert flat == EX_TRANSITIONS
