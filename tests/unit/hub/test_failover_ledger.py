"""The failover score keeper can fail: each count is shown non-zero on a log that earns it."""

from __future__ import annotations

from tests.support.ledger import Log, reused, score

ACKED = {f"p:{n}": ("E", n + 1) for n in range(5)}


def log_of(*items: tuple[str, int, str] | tuple[str, int]) -> Log:
    log = Log()
    for item in items:
        if len(item) == 3:
            log.message(*item)
        else:
            log.notice(*item)
    return log


def test_a_clean_log_scores_zero() -> None:
    log = log_of(*[("E", n + 1, f"p:{n}") for n in range(5)])
    s = score(log, ACKED)
    assert (s.delivered, s.lost_silently, s.lost_announced, s.duplicated, s.out_of_order) == (
        5, 0, 0, 0, 0,
    )  # fmt: skip


def test_a_hole_without_a_notice_is_silent_and_with_one_announced() -> None:
    silent = log_of(("E", 1, "p:0"), ("E", 2, "p:1"), ("E", 4, "p:3"), ("E", 5, "p:4"))
    assert score(silent, ACKED).lost_silently == 1
    told = log_of(("E", 1, "p:0"), ("E", 2, "p:1"), ("F", 0), ("F", 1, "p:3"), ("F", 2, "p:4"))
    s = score(told, ACKED)
    assert (s.lost_silently, s.lost_announced) == (0, 1)
    tail = log_of(("E", 1, "p:0"), ("E", 2, "p:1"), ("E", 3, "p:2"))
    assert score(tail, ACKED).lost_silently == 2


def test_duplicates_reordering_and_reused_offsets_are_counted() -> None:
    log = log_of(
        ("E", 1, "p:0"), ("E", 2, "p:1"), ("E", 2, "p:1"), ("E", 4, "p:3"), ("E", 3, "p:2")
    )
    s = score(log, ACKED)
    assert s.duplicated == 1 and s.out_of_order == 2
    other = log_of(("E", 1, "p:0"), ("E", 2, "q:0"))
    assert reused([other], ACKED) == 1
    assert reused([log_of(("E", 1, "p:0"))], ACKED) == 0
