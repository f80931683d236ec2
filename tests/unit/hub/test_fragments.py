"""The unfinished-message meter and the replica-wide budget (limpet.hub.fragments)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limpet.hub.fragments import TRANSITIONS, MessageMeter, UnfinishedBudget
from tests.support.wsframes import BINARY, CONT, PING, TEXT, client_frame

frame = client_frame


def test_a_fragmented_message_is_held_until_its_last_fragment() -> None:
    meter = MessageMeter()
    assert meter.feed(frame(TEXT, b"a" * 10, fin=False)) == 10
    assert meter.feed(frame(CONT, b"b" * 300, fin=False)) == 310
    assert meter.feed(frame(PING, b"ping")) == 310  # control frames are no part of it
    assert meter.feed(frame(CONT, b"c" * 70000, fin=False)) == 70310
    assert meter.feed(frame(CONT, b"", fin=True)) == 0


def test_a_frame_arriving_in_pieces_is_held_as_it_arrives() -> None:
    meter = MessageMeter()
    wire = frame(BINARY, b"x" * 1000)
    assert meter.feed(wire[:500]) == 500 - 8  # 2 header bytes, 2 length bytes, 4 mask bytes
    assert meter.feed(wire[500:]) == 0


def test_complete_messages_in_one_read_hold_nothing() -> None:
    meter = MessageMeter()
    assert meter.feed(b"".join(frame(TEXT, b"42[1]") for _ in range(50))) == 0


frames = st.lists(
    st.tuples(
        st.booleans(),
        st.sampled_from([TEXT, BINARY, PING]),
        st.sampled_from([0, 1, 125, 126, 127, 65535, 65536]),
        st.booleans(),
    ),
    max_size=8,
)


@given(frames, st.lists(st.integers(min_value=0, max_value=1 << 17), max_size=6), st.data())
def test_any_split_of_the_stream_gives_what_the_frames_hold(
    spec: list[tuple[bool, int, int, bool]], cuts: list[int], data: st.DataObject
) -> None:
    wire, held, started = b"", 0, False
    for fin, opcode, size, mask in spec:
        if opcode == PING:
            wire += frame(PING, b"p" * min(size, 125), mask=mask)
            continue
        wire += frame(CONT if started else opcode, b"d" * size, fin=fin, mask=mask)
        held, started = (0, False) if fin else (held + size, True)
    meter = MessageMeter()
    points = sorted({min(c, len(wire)) for c in cuts})
    last = 0
    for point in [*points, len(wire)]:
        meter.feed(wire[last:point])
        last = point
    assert meter.held == held


def test_the_budget_bounds_the_sum_and_lets_a_connection_shrink() -> None:
    budget = UnfinishedBudget(100)
    a, b = object(), object()
    assert budget.hold(a, 60)
    assert budget.hold(b, 40)
    assert not budget.hold(b, 41)  # past the sum: refused, b keeps its 40
    assert budget.snapshot() == {"limit": 100, "held": 100, "connections": 2, "refused": 1}
    assert budget.hold(a, 10)  # shrinking is always allowed
    assert budget.hold(b, 90)
    assert budget.hold(a, 0)
    budget.release(b)
    budget.release(b)  # idempotent
    assert budget.snapshot() == {"limit": 100, "held": 0, "connections": 0, "refused": 1}


def test_twin_without_a_limit_everything_is_held() -> None:
    budget = UnfinishedBudget(0)
    assert all(budget.hold(object(), 16 << 20) for _ in range(20))
    assert budget.snapshot()["held"] == 20 * (16 << 20)
    with pytest.raises(ValueError):
        UnfinishedBudget(-1)


def test_the_meter_moves_only_along_its_transition_table() -> None:
    wire = b"".join(
        [
            client_frame(TEXT, b"a" * 200, fin=False),
            client_frame(PING, b""),
            client_frame(CONT, b"", fin=False),
            client_frame(CONT, b"b" * 70000),
        ]
    )
    meter = MessageMeter()
    seen = set()
    for i in range(len(wire)):
        before = meter._state
        meter.feed(wire[i : i + 1])
        seen.add((before, meter._state))
    assert all(after in TRANSITIONS[before] or after is before for before, after in seen)
    assert meter.held == 0
