"""limpet.client.core, the sans-IO state of a client subscription: table cases, the transition
table, a hypothesis property (whatever the transport does, 1..N exactly once, in order), the
I/O boundary, and the chat page's copy of limpet-client staying the package's file."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limpet.client.core import (
    TRANSITIONS,
    ChannelState,
    Event,
    Gap,
    GapReason,
    Position,
    State,
)
from tests.support.procs import ROOT, SRC, limpet_env


def live(
    position: Position | None = None, ack: tuple[str, int, bool] = ("e", 0, False)
) -> ChannelState:
    s = ChannelState("c", position)
    token, _ = s.subscribe()
    s.on_ack(token, *ack)
    return s


def test_first_subscribe_starts_at_the_ack_and_delivers_next_offsets_once() -> None:
    s = ChannelState("c")
    token, since = s.subscribe()
    assert since is None
    assert not s.on_message("e", 1).deliver, "nothing before the ack"
    assert s.on_ack(token, "e", 4, False) == (False, None)
    assert s.on_message("e", 5).deliver
    assert not s.on_message("e", 5).deliver
    assert not s.on_message("e", 2).deliver
    assert s.position == Position("e", 5)


def test_recovered_keeps_the_position_and_the_missed_messages_follow() -> None:
    s = ChannelState("c", Position("e", 7))
    token, since = s.subscribe()
    assert since == Position("e", 7)
    assert s.on_ack(token, "e", 10, True) == (False, None)
    assert s.position == Position("e", 7)
    assert s.on_message("e", 8).deliver


@pytest.mark.parametrize(
    ("epoch", "reason"), [("e", GapReason.HISTORY_WINDOW), ("f", GapReason.EPOCH_CHANGED)]
)
def test_not_recovered_is_a_gap_with_its_reason(epoch: str, reason: GapReason) -> None:
    s = ChannelState("c", Position("e", 3))
    token, _ = s.subscribe()
    stale, gap = s.on_ack(token, epoch, 50, False)
    assert not stale
    assert gap == Gap("c", Position("e", 3), Position(epoch, 50), reason)
    assert s.on_message(epoch, 51).deliver


def test_stale_acks_holes_stalls_and_recovery_events() -> None:
    s = ChannelState("c")
    first, _ = s.subscribe()
    second, _ = s.subscribe()
    assert s.on_ack(first, "e", 1, False)[0] is True
    s.disconnect()
    assert s.on_ack(second, "e", 1, False)[0] is True
    s = live(Position("e", 1), ("e", 1, True))
    decision = s.on_message("e", 3)
    assert decision.resubscribe and not decision.deliver and s.state is State.SUBSCRIBING
    s = live(Position("e", 1), ("e", 1, True))
    s.stall()
    assert s.state is State.STALLED and not s.on_message("e", 2).deliver
    s = live(Position("e", 1), ("e", 1, True))
    assert s.on_recovery("e", 9) == Gap(
        "c", Position("e", 1), Position("e", 9), GapReason.HISTORY_WINDOW
    )
    assert s.on_recovery("e", 9) is None


def test_transition_table_every_state_can_subscribe_and_disconnect() -> None:
    for state in State:
        assert TRANSITIONS[(state, Event.SUBSCRIBE)] is State.SUBSCRIBING
        assert TRANSITIONS[(state, Event.DISCONNECT)] is State.IDLE
    assert {k for k in TRANSITIONS if k[1] is Event.ACK} == {(State.SUBSCRIBING, Event.ACK)}


def test_position_parses_saved_json_and_refuses_garbage() -> None:
    assert Position.parse({"epoch": "e", "offset": 3}) == Position("e", 3)
    assert Position.parse(None) is None
    for bad in [
        {"epoch": "e"},
        {"epoch": 1, "offset": 1},
        {"epoch": "e", "offset": -1},
        {"epoch": "e", "offset": True},
    ]:
        with pytest.raises(ValueError, match="a position is"):
            Position.parse(bad)  # type: ignore[arg-type]


@given(
    total=st.integers(1, 60),
    plan=st.lists(st.tuples(st.integers(0, 80), st.integers(0, 3)), min_size=1, max_size=30),
)
def test_property_random_disconnects_and_seam_repeats_deliver_each_offset_once_in_order(
    total: int, plan: list[tuple[int, int]]
) -> None:
    """A subscription that resubscribes from its position after each drop delivers 1..N once,
    in order, whatever the hub repeats at the seam and wherever the connection drops."""
    s = ChannelState("c", Position("e", 0))
    delivered: list[int] = []
    rounds = 0
    while s.position is not None and s.position.offset < total and rounds < 200:
        cut, repeat = plan[rounds % len(plan)]
        rounds += 1
        token, since = s.subscribe()
        assert since is not None
        s.on_ack(token, "e", total, True)
        stream: list[int] = []
        for o in range(since.offset + 1, total + 1):
            stream.append(o)
            if repeat and o % (repeat + 1) == 0:
                stream.append(max(1, o - repeat))  # the seam repeats what was delivered
        for o in stream[: cut if rounds < 100 else len(stream)]:
            if s.on_message("e", o).deliver:
                delivered.append(o)
        s.disconnect()
    assert delivered == list(range(1, total + 1))


def test_the_core_imports_no_io() -> None:
    code = (
        "import sys\n"
        "for m in ['asyncio', 'socket', 'socketio', 'engineio', 'aiohttp']: sys.modules[m] = None\n"
        "import limpet.client.core\n"
        "import limpet.client\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=limpet_env(), capture_output=True, text=True, cwd=SRC
    )
    assert done.returncode == 0, done.stderr


def test_the_hub_serves_the_package_file_unchanged() -> None:
    package = (ROOT / "clients" / "js" / "limpet-client.js").read_bytes()
    served = (SRC / "limpet" / "hub" / "static" / "limpet-client.js").read_bytes()
    assert served == package, "copy clients/js/limpet-client.js to src/limpet/hub/static/"
