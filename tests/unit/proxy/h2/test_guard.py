"""The frame guard: each flood is counted from the raw bytes, fed whole and byte by byte."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limpet.proxy.h2.guard import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    PING,
    PREFACE,
    PRIORITY,
    RST_STREAM,
    SETTINGS,
    FrameGuard,
)
from limpet.proxy.h2.limits import H2Limits, Rate

SMALL = H2Limits(
    max_resets=3,
    max_pings=3,
    max_settings=3,
    max_priority=3,
    max_empty_frames=3,
    max_continuations=3,
    max_header_block=100,
)


def frame(kind: int, flags: int = 0, sid: int = 1, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + sid.to_bytes(4, "big") + payload


def feed(guard: FrameGuard, data: bytes, *, bytewise: bool, now: float = 0.0) -> str | None:
    if not bytewise:
        return guard.feed(data, now)
    for i in range(len(data)):
        why = guard.feed(data[i : i + 1], now)
        if why is not None:
            return why
    return None


FLOODS = [
    ("resets", frame(RST_STREAM, payload=b"\0\0\0\x08"), "stream resets"),
    ("pings", frame(PING, sid=0, payload=b"12345678"), "PINGs"),
    ("settings", frame(SETTINGS, sid=0), "SETTINGS"),
    ("priority", frame(PRIORITY, payload=b"\0\0\0\0\x10"), "PRIORITY"),
    ("empty data", frame(DATA), "empty frames"),
    ("empty headers", frame(HEADERS), "empty frames"),
]


@pytest.mark.parametrize("bytewise", [False, True])
@pytest.mark.parametrize(("name", "one", "words"), FLOODS, ids=[f[0] for f in FLOODS])
def test_a_flood_past_its_limit_is_named(name: str, one: bytes, words: str, bytewise: bool) -> None:
    guard = FrameGuard(SMALL)
    assert feed(guard, PREFACE + one * 3, bytewise=bytewise) is None  # at the limit: fine
    why = feed(guard, one, bytewise=bytewise)
    assert why is not None and words in why


@pytest.mark.parametrize(("name", "one", "words"), FLOODS, ids=[f[0] for f in FLOODS])
def test_twin_the_same_frames_spread_over_windows_pass(name: str, one: bytes, words: str) -> None:
    guard = FrameGuard(SMALL)
    assert guard.feed(PREFACE, 0.0) is None
    for i in range(40):
        assert guard.feed(one, now=i * SMALL.window / 2) is None


def test_acks_and_frames_that_end_something_are_not_floods() -> None:
    guard = FrameGuard(SMALL)
    acks = frame(PING, flags=1, sid=0, payload=b"12345678") + frame(SETTINGS, flags=1, sid=0)
    ends = frame(DATA, flags=END_STREAM) + frame(HEADERS, flags=END_HEADERS)
    assert guard.feed(PREFACE + (acks + ends) * 20, 0.0) is None


@pytest.mark.parametrize("bytewise", [False, True])
def test_continuation_count_and_bytes_per_header_block(bytewise: bool) -> None:
    guard = FrameGuard(SMALL)
    flood = frame(HEADERS, payload=b"x") + frame(CONTINUATION, payload=b"x") * 4
    why = feed(guard, PREFACE + flood, bytewise=bytewise)
    assert why is not None and "CONTINUATION" in why
    guard = FrameGuard(SMALL)
    big = frame(HEADERS, payload=b"x" * 60) + frame(CONTINUATION, payload=b"x" * 60)
    why = feed(guard, PREFACE + big, bytewise=bytewise)
    assert why is not None and "header block over 100" in why
    # twin: each block within both bounds, many of them
    guard = FrameGuard(SMALL)
    fine = frame(HEADERS, payload=b"x" * 30) + frame(CONTINUATION, flags=END_HEADERS, payload=b"x")
    assert feed(guard, PREFACE + fine * 50, bytewise=bytewise) is None


def test_payloads_are_skipped_not_held() -> None:
    guard = FrameGuard(SMALL)
    data = PREFACE + frame(DATA, payload=b"\x03" * 10_000)  # payload bytes look like RST frames
    assert guard.feed(data, 0.0) is None
    assert guard.skip == 0 and guard.head == b""


@given(st.lists(st.sampled_from([f[1] for f in FLOODS]), max_size=30), st.integers(1, 17))
def test_split_anywhere_the_counts_are_the_same(frames: list[bytes], size: int) -> None:
    data = PREFACE + b"".join(frames)
    whole, pieces = FrameGuard(H2Limits()), FrameGuard(H2Limits())
    assert whole.feed(data, 0.0) is None
    for i in range(0, len(data), size):
        assert pieces.feed(data[i : i + size], 0.0) is None
    for attr in ("resets", "pings", "settings", "priority", "empty"):
        assert getattr(whole, attr).count == getattr(pieces, attr).count


def test_rate_window_restarts() -> None:
    rate = Rate(2, 10.0)
    assert not rate.hit(0.0) and not rate.hit(1.0) and rate.hit(2.0)
    assert not rate.hit(10.0)  # a new window


def test_window_updates_are_not_a_flood() -> None:
    """A fast download sends a WINDOW_UPDATE per DATA frame read: no fixed rate is a flood."""
    guard = FrameGuard(SMALL)
    update = frame(8, payload=b"\0\0\x40\0")
    assert guard.feed(PREFACE + update * 10_000, 0.0) is None
