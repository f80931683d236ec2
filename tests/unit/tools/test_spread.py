"""`limpet check`'s session spread: at the start, at the end, and the clients that moved."""

from __future__ import annotations

from limpet.tools import spread
from limpet.tools.verdict import Attempt, ClientRun


def run(i: int, *backends: str) -> ClientRun:
    return ClientRun(i, tuple(Attempt(b) for b in backends))


def test_a_scale_up_that_rebalanced_shows_the_spread_fall() -> None:
    runs = [run(i, "a" if i % 2 else "b", "a" if i % 2 else "b") for i in range(4)]
    runs += [run(i, "a" if i % 2 else "b", "c" if i % 2 else "d") for i in range(4, 8)]
    s = spread.of_runs(runs)
    assert s.backends == ("a", "b", "c", "d")
    assert s.at_start == 2.0 and s.at_end == 1.0 and s.changed == 4
    (line,) = spread.render(s)
    assert "2.00 at the start -> 1.00 at the end (4 clients ended elsewhere)" in line
    assert spread.to_json(s)["changed_clients"] == 4


def test_twin_nothing_moved_the_spread_stays() -> None:
    runs = [run(i, "a" if i % 2 else "b", "a" if i % 2 else "b") for i in range(8)]
    s = spread.of_runs(runs)
    assert s.at_start == s.at_end == 1.0 and s.changed == 0
    assert "at the end" not in spread.render(s)[0]


def test_failures_and_single_backends_are_harmless() -> None:
    runs = [ClientRun(1, (Attempt(error="timeout"),)), run(2, "a")]
    s = spread.of_runs(runs)
    assert spread.render(s) == [] and s.at_start == 1.0
    assert spread.spread({}, []) == 1.0


def test_clients_that_swapped_backends_are_said_even_when_the_spread_stays() -> None:
    s = spread.of_runs([run(1, "a", "b"), run(2, "b", "a")])
    assert s.at_start == s.at_end == 1.0 and s.changed == 2
    assert "(2 clients ended elsewhere)" in spread.render(s)[0]
