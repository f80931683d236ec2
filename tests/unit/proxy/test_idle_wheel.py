"""The idle timer wheel: a deadline comes out of its slot never early, at most one slot late,
once, and not at all once removed."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from limpet.proxy.idle import IdleTimers, IdleWheel


class Item:
    def __init__(self, name: int) -> None:
        self.name = name
        self.idle_slot: int | None = None
        self.fired = 0

    def _on_timer(self) -> None:
        self.fired += 1

    def __repr__(self) -> str:
        return f"Item({self.name})"


@given(
    deadlines=st.lists(st.floats(0, 100, allow_nan=False), max_size=40),
    removed=st.sets(st.integers(0, 39)),
    steps=st.lists(st.floats(0, 3, allow_nan=False), min_size=1, max_size=80),
)
def test_due_never_early_at_most_one_slot_late_and_once(
    deadlines: list[float], removed: set[int], steps: list[float]
) -> None:
    wheel: IdleWheel[Item] = IdleWheel(0.5)
    items = [Item(i) for i in range(len(deadlines))]
    for item, deadline in zip(items, deadlines, strict=True):
        wheel.add(item, deadline)
    for i in removed & set(range(len(items))):
        wheel.remove(items[i])
    out: dict[int, tuple[float, float]] = {}  # item -> (the check before, the check that took it)
    now = 0.0
    for step in [*steps, 200.0]:
        before, now = now, now + step
        for item in wheel.due(now):
            assert item.name not in out, "taken out twice"
            out[item.name] = (before, now)
            assert item.idle_slot is None
    live = {i for i in range(len(items)) if i not in removed}
    assert set(out) == live and not wheel and len(wheel) == 0
    for i in live:
        before, taken = out[i]
        assert taken >= deadlines[i]  # never early
        # at the first check at or after its slot's time: at most one slot (0.5 s) late
        assert before < deadlines[i] + 0.5


def test_refiling_moves_an_item_and_next_time_follows_the_earliest_slot() -> None:
    wheel: IdleWheel[Item] = IdleWheel(1.0)
    a, b = Item(1), Item(2)
    assert wheel.next_time() is None
    wheel.add(a, 10.2)
    wheel.add(b, 5.0)
    assert wheel.next_time() == 5.0
    wheel.add(b, 20.0)  # b saw traffic: its deadline moved
    assert wheel.next_time() == 11.0 and len(wheel) == 2
    assert wheel.due(10.9) == []
    assert wheel.due(11.0) == [a]
    wheel.remove(b)
    assert wheel.next_time() is None and not wheel
    wheel.remove(b)  # twice: nothing to do


async def test_one_loop_timer_runs_each_due_item_once() -> None:
    loop = asyncio.get_running_loop()
    timers: IdleTimers[Item] = IdleTimers(loop)
    fired = asyncio.Event()
    a, b, c = Item(1), Item(2), Item(3)
    c._on_timer = fired.set  # type: ignore[method-assign]
    now = loop.time()
    timers.add(a, now)
    timers.add(b, now + 3600)
    timers.add(c, now + 0.01)
    await asyncio.wait_for(fired.wait(), 5)
    assert a.fired == 1 and b.fired == 0 and timers._handle is not None  # armed for b
    timers.remove(b)
    assert timers._handle is None and not timers.wheel  # nothing filed: no loop timer
