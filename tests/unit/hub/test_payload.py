"""Limits on a message's data, checked at publish (depth, size, finite numbers, offsets) and on
JSON text before it is parsed (depth, size)."""

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
    check_offset,
    check_shape,
    encode_checked,
    nesting_within,
    readable,
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


# --- the rule on JSON text, before any parser (the same on every Python version) -----------------


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(0, 6))
def test_nesting_within_agrees_with_the_decoded_depth(value: object, limit: int) -> None:
    raw = msgspec.json.encode(value)
    expected = depth_of(value) <= limit
    assert nesting_within(raw, limit) is expected
    assert nesting_within(raw.decode(), limit) is expected


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"1", 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}], "c": {}}', 4),
        (b'["[[[[", "]]", "\\"[[{{"]', 1),  # brackets and escaped quotes inside strings
        (b'{"k\\\\": [[]]}', 3),  # an escaped backslash ends its string
        (b"[" * 5000 + b"]" * 5000, 5000),
    ],
)
def test_nesting_within_table(text: bytes, depth: int) -> None:
    assert nesting_within(text, depth)
    if depth:
        assert not nesting_within(text, depth - 1)


@pytest.mark.parametrize("text", [b"[[[", b'{"a": [1}', b"]]]]"])
def test_malformed_text_is_left_to_the_parser_unless_it_could_be_deep(text: bytes) -> None:
    """Unbalanced brackets are not JSON: the parser says so, when they are few enough that no
    parser could recurse past the limit on them."""
    assert nesting_within(text, 4)
    assert not nesting_within(b"[" * 5000, 32)


def test_readable_applies_both_limits() -> None:
    raw = msgspec.json.encode(nested(3))
    assert readable(raw, max_depth=3, max_bytes=len(raw))
    assert not readable(raw, max_depth=2, max_bytes=len(raw))
    assert not readable(raw, max_depth=3, max_bytes=len(raw) - 1)


def test_the_depth_limit_is_within_every_supported_parser() -> None:
    """MAX_DEPTH_LIMIT plus the envelopes around data (a record, a packet's array and object)
    is parsed and encoded by msgspec and the json module on this Python: the rule, not the
    interpreter, refuses what is deeper."""
    deep = b"[" * (MAX_DEPTH_LIMIT + 3) + b"]" * (MAX_DEPTH_LIMIT + 3)
    value = msgspec.json.decode(deep)
    assert json.loads(deep) == value
    assert msgspec.json.encode(value) == deep
