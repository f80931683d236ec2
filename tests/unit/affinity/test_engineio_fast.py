"""The engineio policy's per-request shortcuts agree with the plain computation they replace.

The query fast path (no percent or plus: nothing to decode), the cache of verified tokens and the
shared pinned Pick per backend view must give exactly what the reference code gives.
"""

from __future__ import annotations

from urllib.parse import unquote

from hypothesis import given
from hypothesis import strategies as st

from limpet.affinity import engineio as eio
from limpet.affinity.base import PickReason, RequestFacts
from limpet.affinity.engineio import EngineIOPolicy, SidCodec, classify, replace_sid
from limpet.errors import TokenError
from limpet.pool.model import BackendState, BackendView, PoolSnapshot

query_chars = st.sampled_from("abcsidEIOtransport=&%+2041._~-")
queries = st.text(query_chars, max_size=40)


def reference_pairs(query: str) -> list[tuple[str, str, str]]:
    """The decoding every field goes through when it may hold escapes."""
    out = []
    for field in query.split("&"):
        if field:
            name, _, value = field.partition("=")
            out.append((unquote(name.replace("+", " ")), unquote(value.replace("+", " ")), field))
    return out


@given(query=queries)
def test_query_fast_path_matches_the_decoding_path(query: str) -> None:
    assert eio._query_pairs(query) == reference_pairs(query)


@given(query=queries, sid=st.text("abcXYZ019-_", min_size=1, max_size=8))
def test_classify_and_replace_agree_with_the_reference(query: str, sid: str) -> None:
    pairs = reference_pairs(query)
    request = classify("/socket.io/", query)
    assert request is not None
    sids = [v for n, v, _ in pairs if n == "sid"]
    assert request.sid_count == len(sids)
    assert request.sid == (sids[0] if sids else None)
    expected = "&".join(f"sid={sid}" if n == "sid" else raw for n, _, raw in pairs)
    assert replace_sid(query, sid) == expected


@given(token=st.text("abcAB01.-_~", max_size=60))
def test_a_cached_open_answers_as_the_first_one(token: str) -> None:
    codec = SidCodec(b"k")
    for _ in range(2):  # the second call is answered from the cache, or fails again
        try:
            codec.open(token)
        except TokenError:
            continue
        raise AssertionError(f"{token!r} opened")


def test_only_verified_tokens_are_cached_and_the_cache_is_bounded() -> None:
    codec = SidCodec(b"k")
    good = codec.mint("abc", "b1")
    assert codec.open(good) == codec.open(good) == ("abc", codec.backend_tag("b1"))
    try:
        codec.open(good[:-1] + ("A" if good[-1] != "A" else "B"))
    except TokenError:
        pass
    assert list(codec._opened) == [good]
    for i in range(eio._OPENED_CACHE_MAX + 10):
        codec.open(codec.mint(f"s{i}", "b1"))
    assert len(codec._opened) <= eio._OPENED_CACHE_MAX


def test_a_pinned_pick_follows_the_backend_view() -> None:
    """The shared Pick is rebuilt when the snapshot's view of the backend changes."""
    policy = EngineIOPolicy(secret=b"k")
    token = policy.mint("abc", "b1")
    facts = RequestFacts("127.0.0.1", "/socket.io/", f"EIO=4&transport=polling&sid={token}")
    healthy = PoolSnapshot("p", (BackendView("b1", "127.0.0.1:1"),))
    first = policy.decide(facts, healthy).pick
    assert first.reason is PickReason.PINNED and first.backend is healthy.backends[0]
    assert policy.decide(facts, healthy).pick is first
    draining = PoolSnapshot("p", (BackendView("b1", "127.0.0.1:1", BackendState.DRAINING),))
    again = policy.decide(facts, draining).pick
    assert again.reason is PickReason.PINNED and again.backend is draining.backends[0]
    ejected = PoolSnapshot("p", (BackendView("b1", "127.0.0.1:1", BackendState.EJECTED),))
    assert policy.decide(facts, ejected).pick.reason is PickReason.REJECTED
