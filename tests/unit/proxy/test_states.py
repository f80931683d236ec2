"""The downstream connection's state machine, as a table."""

from __future__ import annotations

import pytest

from limpet.proxy.states import TRANSITIONS, DownEvent, DownState, advance, describe


@pytest.mark.parametrize(("step", "after"), list(TRANSITIONS.items()), ids=str)
def test_every_listed_step(step: tuple[DownState, DownEvent], after: DownState) -> None:
    assert advance(*step) is after


def test_every_state_ends_closed_when_the_transport_is_lost() -> None:
    assert all(advance(s, DownEvent.LOST) is DownState.CLOSED for s in DownState)


def test_unlisted_steps_change_nothing_and_closed_is_final() -> None:
    for state in DownState:
        for event in DownEvent:
            if (state, event) not in TRANSITIONS:
                assert advance(state, event) is state
    assert all(advance(DownState.CLOSED, e) is DownState.CLOSED for e in DownEvent)


def test_a_tunnel_is_reached_only_through_an_upgrade_and_a_refusal_is_never_undone() -> None:
    sources = {s for (s, e), t in TRANSITIONS.items() if t is DownState.TUNNEL}
    assert sources == {DownState.UPGRADING, DownState.HALF_CLOSED}
    assert {t for (s, _), t in TRANSITIONS.items() if s is DownState.REFUSED} == {DownState.CLOSED}
    assert "reading" in describe()
