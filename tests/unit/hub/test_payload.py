"""Limits on a message's data, checked at publish (depth, size, finite numbers, offsets) and on
what the hub parses (depth)."""

from __future__ import annotations

import json
import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from limpet.errors import ChannelError
from limpet.hub.channels.payload import (
    MAX_DEPTH_LIMIT,
    MAX_OFFSET,
    brackets,
    check_offset,
    check_shape,
    decoded_within,
    deeper_than,
    encode_checked,
)


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value] if depth % 2 else {"k": value}
    return value


def test_depth_limit_counts_containers() -> None:
    check_shape(nested(32), max_depth=32)
    with pytest.raises(ChannelError, match="deeper than 32"):
        check_shape(nested(33), max_depth=32)


def test_far_past_the_recursion_limit_is_an_error_not_a_recursion_error() -> None:
    deep = nested(100_000)  # the walk is iterative
    with pytest.raises(ChannelError, match="nested deeper"):
        encode_checked(deep, max_depth=32, max_bytes=1 << 30)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, {"a": [1, {"b": math.nan}]}])
def test_nan_and_infinity_are_refused(bad: object) -> None:
    with pytest.raises(ChannelError, match="NaN and Infinity"):
        encode_checked(bad, max_depth=32, max_bytes=1000)


def test_size_limit_names_both_sizes() -> None:
    assert encode_checked("x" * 8, max_depth=1, max_bytes=10) == b'"xxxxxxxx"'
    with pytest.raises(ChannelError, match=r"payload too large: 12 bytes > 10"):
        encode_checked("x" * 10, max_depth=1, max_bytes=10)


def test_not_json() -> None:
    with pytest.raises(ChannelError, match="not JSON"):
        encode_checked({1j}, max_depth=4, max_bytes=100)


@pytest.mark.parametrize("bad", [-1, MAX_OFFSET + 1, 10**4000, True, 1.0, "3", None])
def test_offsets_outside_the_range_are_refused(bad: object) -> None:
    with pytest.raises(ChannelError, match="offset must be an integer"):
        check_offset(bad)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


def depth_of(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(1, 6))
def test_accepted_data_is_within_the_limit_and_round_trips(value: object, limit: int) -> None:
    try:
        raw = encode_checked(value, max_depth=limit, max_bytes=1 << 20)
    except ChannelError:
        assert depth_of(value) > limit
        return
    assert depth_of(value) <= limit
    assert json.loads(raw) == value


# --- the rule on what the hub parses (the same answer on every Python version) -----------------


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(0, 6))
def test_decoded_within_agrees_with_the_depth(value: object, limit: int) -> None:
    raw = msgspec.json.encode(value)
    expected = depth_of(value) <= limit
    assert deeper_than(value, limit) is not expected
    assert decoded_within(raw, value, limit) is expected
    assert decoded_within(raw.decode(), value, limit) is expected
    assert brackets(raw) >= depth_of(value)


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"1", 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}], "c": {}}', 4),
        (b'["[[[[", "]]", "\\"[[{{"]', 1),  # brackets inside strings are no nesting
        (b"[" * 5000 + b"]" * 5000, 5000),
    ],
)
def test_deeper_than_table(text: bytes, depth: int) -> None:
    value = msgspec.json.decode(text) if depth < 1000 else nested_list(depth)
    assert not deeper_than(value, depth)
    if depth:
        assert deeper_than(value, depth - 1)
        assert not decoded_within(text, value, depth - 1)


def nested_list(depth: int) -> object:
    value: object = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_the_depth_limit_is_within_every_supported_parser() -> None:
    """MAX_DEPTH_LIMIT plus the envelopes around data (a record, a packet's array and object)
    is parsed and encoded by msgspec and the json module on this Python, so data within any
    --max-depth never meets a parser's RecursionError; what does is past the limit."""
    deep = b"[" * (MAX_DEPTH_LIMIT + 3) + b"]" * (MAX_DEPTH_LIMIT + 3)
    value = msgspec.json.decode(deep)
    assert json.loads(deep) == value
    assert msgspec.json.encode(value) == deep
