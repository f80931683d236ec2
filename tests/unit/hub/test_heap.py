"""limpet.hub.heap: a replica's collector settings, and what they save while connections pile up.

The twin of the tuned run is the untuned one: the same growth of long-lived objects (a storm's
connections: small cycles that stay alive) under Python's defaults runs many full collections,
each walking everything; tuned, far fewer. Counts of collections, not times.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from limpet.hub import heap


@pytest.fixture
def collector() -> Iterator[None]:
    """Leave the test process's collector as it was."""
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def full_collections_while_growing(objects: int) -> int:
    """Full collections while ``objects`` connection-like cycles are made and kept."""
    full = 0

    def count(phase: str, info: dict[str, Any]) -> None:
        nonlocal full
        if phase == "start" and info["generation"] == 2:
            full += 1

    kept: list[dict[str, Any]] = []
    gc.callbacks.append(count)
    try:
        for i in range(objects):
            conn: dict[str, Any] = {"sid": i, "subs": {}, "queue": []}
            conn["self"] = conn  # the cycles a connection's objects make
            kept.append(conn)
    finally:
        gc.callbacks.remove(count)
    return full


@pytest.mark.usefixtures("collector")
def test_tune_freezes_start_up_and_raises_the_young_threshold() -> None:
    tuning = heap.tune(50_000)
    assert tuning is not None
    assert gc.get_threshold()[0] == 50_000
    assert gc.get_threshold()[1:] == tuning.before[1:]
    assert gc.get_freeze_count() > 0
    heap.restore(tuning)
    assert gc.get_threshold() == tuning.before
    assert gc.get_freeze_count() == 0


@pytest.mark.usefixtures("collector")
def test_zero_leaves_the_collector_alone() -> None:
    before = gc.get_threshold()
    assert heap.tune(0) is None
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


@pytest.mark.usefixtures("collector")
def test_tuned_a_growing_heap_costs_far_fewer_full_collections() -> None:
    gc.set_threshold(700, 10, 10)  # CPython's defaults
    gc.collect()
    untuned = full_collections_while_growing(300_000)
    gc.collect()
    heap.tune()
    tuned = full_collections_while_growing(300_000)
    assert untuned >= 3  # the twin: the defaults walk the growing heap again and again
    assert tuned <= untuned // 3
