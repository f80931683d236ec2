"""SendQueue against asyncio.Queue: the same answers to the same operations (a differential
property test, waiting getters, their cancellation and join included), and what it saves: an
idle SendQueue is a fraction of an idle asyncio.Queue (the twin, measured the same way)."""

from __future__ import annotations

import asyncio
import tracemalloc
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from limpet.hub.sendqueue import SendQueue

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 9)),
        st.tuples(st.just("get_nowait"), st.none()),
        st.tuples(st.just("task_done"), st.none()),
        st.tuples(st.just("getter"), st.none()),  # a task waiting in get()
        st.tuples(st.just("cancel"), st.integers(0, 3)),  # cancel the i-th getter still waiting
        st.tuples(st.just("joiner"), st.none()),
        st.tuples(st.just("turn"), st.none()),  # let the loop run the woken tasks
    ),
    max_size=40,
)


async def replay(queue: Any, ops: list[tuple[str, Any]]) -> list[Any]:
    """What ``queue`` answers, step by step (each step's result, then the state)."""
    seen: list[Any] = []
    getters: list[asyncio.Task[Any]] = []
    joiners: list[asyncio.Task[None]] = []

    async def turn() -> None:
        for _ in range(3):
            await asyncio.sleep(0)

    for op, arg in ops:
        if op == "put":
            queue.put_nowait(arg)
            seen.append(None)
        elif op == "get_nowait":
            try:
                seen.append(queue.get_nowait())
            except asyncio.QueueEmpty:
                seen.append("empty")
        elif op == "task_done":
            try:
                queue.task_done()
                seen.append(None)
            except ValueError:
                seen.append("too many")
        elif op == "getter":
            getters.append(asyncio.create_task(queue.get()))
            await turn()
            seen.append(None)
        elif op == "cancel":
            waiting = [g for g in getters if not g.done()]
            if arg < len(waiting):
                waiting[arg].cancel()
            await turn()
            seen.append(None)
        elif op == "joiner":
            joiners.append(asyncio.create_task(queue.join()))
            await turn()
            seen.append(None)
        else:
            await turn()
            seen.append(None)
        results = [
            "cancelled" if g.cancelled() else (g.result() if g.done() else "waiting")
            for g in getters
        ]
        seen.append((queue.qsize(), queue.empty(), results, [j.done() for j in joiners]))
    for task in [*getters, *joiners]:
        task.cancel()
    await asyncio.gather(*getters, *joiners, return_exceptions=True)
    return seen


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_it_answers_as_asyncio_queue_does(ops: list[tuple[str, Any]]) -> None:
    assert asyncio.run(replay(SendQueue(), ops)) == asyncio.run(replay(asyncio.Queue(), ops))


async def test_a_getter_woken_then_cancelled_hands_its_item_to_the_next() -> None:
    queue = SendQueue()
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("x")  # wakes the first getter...
    first.cancel()  # ...which is cancelled before it runs
    assert await asyncio.wait_for(second, 5) == "x"


async def test_join_waits_for_every_task_done() -> None:
    queue = SendQueue()
    queue.put_nowait(1)
    queue.put_nowait(2)
    joiner = asyncio.create_task(queue.join())
    queue.get_nowait()
    queue.task_done()
    await asyncio.sleep(0)
    assert not joiner.done()
    queue.get_nowait()
    queue.task_done()
    await asyncio.wait_for(joiner, 5)


def per_queue(make: Any, n: int = 1000) -> float:
    """Heap bytes per idle queue (made, then used once: an item in and out)."""
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        queues = [make() for _ in range(n)]
        for queue in queues:
            queue.put_nowait(1)
            queue.get_nowait()
            queue.task_done()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert len(queues) == n
    return sum(s.size_diff for s in after.compare_to(before, "filename")) / n


def test_an_idle_send_queue_is_small() -> None:
    assert per_queue(SendQueue) < 200


def test_twin_an_idle_asyncio_queue_is_over_2_kb() -> None:
    assert per_queue(asyncio.Queue) > 2000
