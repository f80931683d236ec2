"""Signed tokens: round trip, tamper detection (any bit, any character), expiry, context."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limpet.affinity.tokens import TokenCodec
from limpet.errors import TokenError

SECRET = b"0123456789abcdef0123456789abcdef"
codec = TokenCodec(SECRET, b"test")
bodies = st.binary(min_size=0, max_size=40)
times = st.floats(min_value=0, max_value=2e9, allow_nan=False)


@given(bodies, times, st.one_of(st.none(), st.floats(min_value=1, max_value=1e6)))
def test_round_trip(body: bytes, now: float, ttl: float | None) -> None:
    token = codec.seal(body, expires=None if ttl is None else now + ttl)
    assert codec.open(token, now=now) == body
    assert TokenCodec(SECRET, b"test").open(token, now=now) == body  # another instance agrees


@given(bodies, st.data())
def test_any_bit_flip_of_the_decoded_token_is_rejected(body: bytes, data: st.DataObject) -> None:
    token = codec.seal(body)
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(TokenError):
        codec.open(forged, now=0.0)


@given(bodies, st.data())
def test_any_character_change_of_the_text_is_rejected(body: bytes, data: st.DataObject) -> None:
    # includes the spare low bits of the last base64 character, which decode to the same bytes
    token = codec.seal(body)
    index = data.draw(st.integers(0, len(token) - 1))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ .%"
    char = data.draw(st.sampled_from([c for c in alphabet if c != token[index]]))
    forged = token[:index] + char + token[index + 1 :]
    with pytest.raises(TokenError):
        codec.open(forged, now=0.0)


@given(st.text(max_size=80))
def test_garbage_never_crashes(text: str) -> None:
    with pytest.raises(TokenError):
        codec.open(text, now=0.0)


@given(bodies, times, st.floats(min_value=1, max_value=1e6))
def test_expiry_with_time_as_a_parameter(body: bytes, now: float, ttl: float) -> None:
    token = codec.seal(body, expires=now + ttl)
    assert codec.open(token, now=now + ttl - 1) == body
    with pytest.raises(TokenError, match="expired"):
        codec.open(token, now=now + ttl + 1)


def test_no_expiry_means_never() -> None:
    assert codec.open(codec.seal(b"x"), now=4e9) == b"x"


def test_other_secret_or_context_is_rejected() -> None:
    token = codec.seal(b"body")
    with pytest.raises(TokenError):
        TokenCodec(b"another secret", b"test").open(token, now=0.0)
    with pytest.raises(TokenError):
        TokenCodec(SECRET, b"other").open(token, now=0.0)


def test_wrong_body_size_is_rejected() -> None:
    with pytest.raises(TokenError):
        codec.open(codec.seal(b"abc"), now=0.0, body_size=4)


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        TokenCodec(b"", b"test")
