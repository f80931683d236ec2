"""limpet.client.backoff: the distribution of reconnection delays (decorrelated jitter) and the
hub's "try again later" (503 Retry-After, close 1013). The twin of clients/js/test/backoff.test.js."""

from __future__ import annotations

import collections
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limpet.client.backoff import Backoff, parse_retry_after, retry_after_from_close


def largest_bucket(delays: list[float]) -> int:
    """The most delays that fall in one 100 ms window."""
    return max(collections.Counter(int(d * 10) for d in delays).values())


@given(st.integers(0, 2**32), st.floats(0.01, 2.0), st.floats(1.0, 60.0))
def test_each_delay_lies_between_base_and_three_times_the_previous_capped(
    seed: int, base: float, cap_factor: float
) -> None:
    backoff = Backoff(base, base * cap_factor, random.Random(seed))
    previous = base
    for _ in range(50):
        delay = backoff.next()
        assert base <= delay <= min(backoff.cap, previous * 3) + 1e-9
        previous = delay


def test_a_herd_that_failed_at_the_same_instant_comes_back_spread_out() -> None:
    rng = random.Random(7)
    third = []
    for _ in range(2000):
        backoff = Backoff(0.5, 60.0, rng)
        backoff.next()
        backoff.next()
        third.append(backoff.next())
    assert largest_bucket(third) < 200
    assert min(third) < 1.0 and max(third) > 8.0
    assert 2.0 < sum(third) / len(third) < 4.5


def test_twin_without_jitter_the_same_herd_comes_back_in_one_wave() -> None:
    third = [0.5 * 2**2 for _ in range(2000)]  # exponential backoff without randomization
    assert largest_bucket(third) == 2000


def test_the_first_attempt_after_a_loss_is_spread_over_zero_to_base() -> None:
    rng = random.Random(1)
    first = [Backoff(0.5, 5.0, rng).first() for _ in range(2000)]
    assert 0 <= min(first) < 0.05 and 0.45 < max(first) <= 0.5
    assert largest_bucket(first) < 450  # five 100 ms windows, about evenly


@given(st.integers(0, 2**32), st.integers(1, 120))
def test_a_retry_after_is_honoured_with_jitter_above_it(seed: int, seconds: int) -> None:
    backoff = Backoff(0.1, 1.0, random.Random(seed))
    delay = backoff.next(float(seconds))
    assert seconds <= delay <= seconds * 1.5
    # the next failure without a word from the hub grows from there, capped again
    assert 0.1 <= backoff.next() <= 1.0


def test_reset_returns_to_the_first_range() -> None:
    backoff = Backoff(0.2, 10.0, random.Random(3))
    for _ in range(20):
        backoff.next()
    backoff.reset()
    assert backoff.next() <= 0.6


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("2", 2.0), (" 10 ", 10.0), ("soon", None), ("-1", None), ("1.5", None), (None, None),
     ("Wed, 21 Oct 2026 07:28:00 GMT", None), ("9999999", None)],
)  # fmt: skip
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


@pytest.mark.parametrize(
    ("reason", "seconds"),
    [
        ("try again later: retry after 4 s", 4.0),
        ("try again later", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_from_a_close_1013(reason: str | None, seconds: float | None) -> None:
    assert retry_after_from_close(reason) == seconds


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(0, 1)
    with pytest.raises(ValueError):
        Backoff(2, 1)
