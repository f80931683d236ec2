"""The per-client outbox policy: holds keep order, the live bound, slack, overflow."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from limpet.hub.channels.outbox import Outbox, Verdict


def test_holds_keep_packets_in_order_until_the_last_release() -> None:
    box: Outbox[str] = Outbox(max_queue=10)
    box.hold()
    box.hold()
    assert box.offer("a", bounded=True, queued=0) is Verdict.HOLD
    assert box.offer("b", bounded=False, queued=0) is Verdict.HOLD
    assert box.release() == []
    assert box.release() == [("a", True), ("b", False)]
    assert box.offer("c", bounded=True, queued=0) is Verdict.SEND


def test_the_bound_cuts_off_a_slow_client_once_and_then_drops() -> None:
    box: Outbox[int] = Outbox(max_queue=3)
    assert [box.offer(n, bounded=True, queued=n) for n in range(3)] == [Verdict.SEND] * 3
    assert box.offer(3, bounded=True, queued=3) is Verdict.OVERFLOW
    assert box.offer(4, bounded=True, queued=0) is Verdict.DROP
    assert box.offer(5, bounded=False, queued=0) is Verdict.DROP


def test_recovered_packets_are_slack_above_the_bound() -> None:
    """Twin of the bound: a page of recovered messages does not cut the client off, and the
    bound counts again once the queue is short."""
    box: Outbox[int] = Outbox(max_queue=3)
    for n in range(5):
        assert box.offer(n, bounded=False, queued=n) is Verdict.SEND
    assert box.offer(5, bounded=True, queued=5) is Verdict.SEND  # 5 < 3 + slack 5
    assert box.offer(6, bounded=True, queued=1) is Verdict.SEND  # short again: slack forgotten
    assert box.slack == 0
    assert box.offer(7, bounded=True, queued=3) is Verdict.OVERFLOW


ops = st.lists(
    st.one_of(
        st.tuples(st.just("live"), st.booleans()),
        st.tuples(st.just("drain"), st.integers(0, 5)),
        st.tuples(st.just("hold"), st.booleans()),
        st.tuples(st.just("release"), st.booleans()),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 8), ops)
def test_queue_stays_bounded_order_is_kept_and_nothing_follows_an_overflow(
    max_queue: int, script: list[tuple[str, object]]
) -> None:
    box: Outbox[int] = Outbox(max_queue=max_queue)
    queue: list[int] = []
    sent: list[int] = []
    offered = 0
    holds = 0
    overflowed_at: int | None = None

    def offer(packet: int, bounded: bool) -> None:
        nonlocal overflowed_at
        verdict = box.offer(packet, bounded=bounded, queued=len(queue))
        if verdict is Verdict.SEND:
            queue.append(packet)
            sent.append(packet)
        elif verdict is Verdict.OVERFLOW:
            overflowed_at = packet
            queue.clear()

    for op, arg in script:
        if op == "live":
            offer(offered, bool(arg))
            offered += 1
        elif op == "drain":
            del queue[: int(arg)]  # type: ignore[call-overload]
        elif op == "hold":
            box.hold()
            holds += 1
        elif op == "release" and holds:
            holds -= 1
            for packet, bounded in box.release():
                offer(packet, bounded)
        bounded_in_queue = len(queue) - box.slack
        assert bounded_in_queue <= max_queue
    assert sent == sorted(sent), "order kept through holds"
    if overflowed_at is not None:
        assert all(p < overflowed_at for p in sent), "nothing after the overflow"


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 8), ops)
def test_clear_means_a_bounded_offer_with_nothing_queued_is_sent_and_changes_nothing(
    max_queue: int, script: list[tuple[str, object]]
) -> None:
    """``clear`` is what fan-out asks instead of ``offer`` (its direct path): it must never
    say yes where ``offer`` would hold, drop, overflow or change the state."""
    box: Outbox[int] = Outbox(max_queue=max_queue)
    queued = 0
    for n, (op, arg) in enumerate(script):
        if op == "live":
            if box.offer(n, bounded=bool(arg), queued=queued) is Verdict.SEND:
                queued += 1
        elif op == "drain":
            queued = max(0, queued - int(arg))  # type: ignore[call-overload]
        elif op == "hold":
            box.hold()
        elif op == "release" and box.holds:
            for packet, bounded in box.release():
                if box.offer(packet, bounded=bounded, queued=queued) is Verdict.SEND:
                    queued += 1
        if box.clear:
            twin = copy.deepcopy(box)
            assert twin.offer(-1, bounded=True, queued=0) is Verdict.SEND
            assert twin == box


def test_clear_is_false_while_held_after_an_overflow_and_with_slack() -> None:
    box: Outbox[int] = Outbox(max_queue=2)
    assert box.clear
    box.hold()
    assert not box.clear
    box.release()
    assert box.clear
    box.offer(1, bounded=False, queued=0)  # a recovered packet: slack until the queue is short
    assert not box.clear
    box.offer(2, bounded=True, queued=0)
    assert box.clear
    assert box.offer(3, bounded=True, queued=2) is Verdict.OVERFLOW
    assert not box.clear
