"""The hooks' sans-IO parts: signatures, what an answer means, the breaker, the grant cache."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limpet.hub.hooks.answers import (
    Allow,
    BadResult,
    Deny,
    Outage,
    identity,
    parse_answer,
    publish_change,
    subscribe_grant,
)
from limpet.hub.hooks.breaker import TRANSITIONS, Breaker, BreakerEvent, BreakerState
from limpet.hub.hooks.cache import GrantCache
from limpet.hub.hooks.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    signed_headers,
    verify,
)

SECRET = b"s3cret"


def test_a_signed_body_verifies() -> None:
    headers = signed_headers(SECRET, b'{"a":1}', 1_000_000.5)
    verify(SECRET, b'{"a":1}', headers, 1_000_010)


@pytest.mark.parametrize(
    ("body", "secret", "now", "why"),
    [
        (b'{"a":2}', SECRET, 1_000_000, "bad signature"),  # body changed
        (b'{"a":1}', b"other", 1_000_000, "bad signature"),  # another secret
        (b'{"a":1}', SECRET, 1_000_000 + 301, "stale"),  # replayed later
        (b'{"a":1}', SECRET, 1_000_000 - 301, "stale"),  # from the future
    ],
)
def test_a_changed_or_stale_request_is_refused(
    body: bytes, secret: bytes, now: float, why: str
) -> None:
    headers = signed_headers(SECRET, b'{"a":1}', 1_000_000)
    with pytest.raises(SignatureError, match=why):
        verify(secret, body, headers, now)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {TIMESTAMP_HEADER: "1000000"},
        {TIMESTAMP_HEADER: "-5", SIGNATURE_HEADER: "v1=00"},
        {TIMESTAMP_HEADER: "1e6", SIGNATURE_HEADER: "v1=00"},
        {TIMESTAMP_HEADER: "1000000", SIGNATURE_HEADER: "v1=é"},
    ],
)
def test_unsigned_or_malformed_headers_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(SignatureError):
        verify(SECRET, b"{}", headers, 1_000_000)


def test_no_secret_no_signature() -> None:
    assert signed_headers(None, b"{}", 1.0) == {}


@given(st.binary(max_size=200), st.integers(0, 2**33))
def test_signatures_round_trip(body: bytes, now: int) -> None:
    verify(SECRET, body, signed_headers(SECRET, body, now), now)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b'{"result": {}}', Allow({})),
        (200, b'{"result": {"user": "ann"}}', Allow({"user": "ann"})),
        (200, b'{"error": {"code": 4403, "message": "no"}}', Deny(4403, "no")),
        (200, b'{"error": {}}', Deny(403, "denied")),
        (500, b'{"result": {}}', Outage("HTTP 500")),
        (200, b"not json", Outage("answer is not JSON")),
        (200, b"[]", Outage('answer must be {"result": {...}} or {"error": {...}}')),
        (200, b'{"result": {}, "error": {}}', Outage('answer must be {"result": {...}} or {"error": {...}}')),
        (200, b'{"result": 5}', Outage("result must be an object")),
        (200, b'{"error": "no"}', Outage('error must be {"code": N, "message": "..."}')),
        (200, b'{"error": {"code": true}}', Outage("error code must be an integer and message a string")),
    ],
)  # fmt: skip
def test_what_an_answer_means(status: int, body: bytes, expected: object) -> None:
    assert parse_answer(status, body) == expected


def test_results_are_read_strictly() -> None:
    assert identity({"user": "ann", "info": {"n": 1}}).user == "ann"
    assert identity({}).user is None
    for bad in ({"user": ""}, {"user": 5}, {"user": "x" * 129}, {"info": []}):
        with pytest.raises(BadResult):
            identity(bad)
    assert subscribe_grant({}).cache and not subscribe_grant({"cache": False}).cache
    with pytest.raises(BadResult):
        subscribe_grant({"cache": "yes"})
    assert publish_change({"data": None}).replaced and not publish_change({}).replaced


def test_the_breaker_opens_after_threshold_and_probes_once() -> None:
    b = Breaker(threshold=3, cooldown=10)
    for _ in range(2):
        assert b.allow(0)
        b.record(False, 0)
    assert b.state is BreakerState.CLOSED
    b.record(False, 1)
    assert b.state is BreakerState.OPEN and not b.allow(5)
    assert b.allow(11) and b.state is BreakerState.HALF_OPEN
    assert not b.allow(11)  # one probe at a time
    b.record(False, 11)
    assert b.state is BreakerState.OPEN and not b.allow(20)
    assert b.allow(21)
    b.record(True, 21)
    assert b.state is BreakerState.CLOSED and b.failures == 0


def test_a_success_resets_the_count() -> None:
    b = Breaker(threshold=2, cooldown=1)
    b.record(False, 0)
    b.record(True, 0)
    b.record(False, 0)
    assert b.state is BreakerState.CLOSED


def test_the_table_is_complete() -> None:
    assert {(s, e) for s in BreakerState for e in BreakerEvent} - set(TRANSITIONS) == {
        (BreakerState.CLOSED, BreakerEvent.COOLED),
        (BreakerState.HALF_OPEN, BreakerEvent.COOLED),
    }


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 3)), max_size=60))
def test_an_open_breaker_lets_nothing_through_before_its_cooldown(
    steps: list[tuple[bool, float]],
) -> None:
    b = Breaker(threshold=2, cooldown=5)
    now = 0.0
    for ok, dt in steps:
        now += dt
        was_open_at = b.opened_at if b.state is BreakerState.OPEN else None
        allowed = b.allow(now)
        if was_open_at is not None and now - was_open_at < 5:
            assert not allowed
        if allowed:
            b.record(ok, now)


def test_the_grant_cache_is_bounded() -> None:
    cache: GrantCache[int] = GrantCache(limit=2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 3)
    cache.put("c", 4)
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (3, None, 4, 2)
    off: GrantCache[int] = GrantCache(limit=0)
    off.put("a", 1)
    assert off.get("a") is None
