"""The engineio policy as a specification: classification, sid tokens, pins, rejections."""

from __future__ import annotations

import pytest

from limpet.affinity.base import Pick, PickReason, RequestFacts
from limpet.affinity.engineio import (
    SESSION_UNKNOWN_BODY,
    EngineIOPick,
    EngineIOPolicy,
    OpenPacketError,
    RequestKind,
    SidCodec,
    classify,
    replace_sid,
)
from limpet.affinity.factory import build_policy
from limpet.affinity.spec import AffinitySpec
from limpet.balancing.base import build_balancer
from limpet.errors import ConfigError, TokenError
from limpet.pool.model import BackendState, BackendView, PoolSnapshot

SECRET = b"s3cret"
SID = "AbCdEfGhIjKlMnOpQrSt"  # the shape python-engineio's generate_id() produces


def pool(*states: BackendState, names: str = "abc") -> PoolSnapshot:
    return PoolSnapshot(
        "p",
        tuple(
            BackendView(n, f"127.0.0.1:{9000 + i}", state=s)
            for i, (n, s) in enumerate(zip(names, states, strict=False))
        ),
    )


HEALTHY3 = pool(BackendState.HEALTHY, BackendState.HEALTHY, BackendState.HEALTHY)


def facts(query: str, path: str = "/socket.io/") -> RequestFacts:
    return RequestFacts(client_ip="127.0.0.1", path=path, query=query)


class Fixed:
    """A fallback policy that always picks one backend, to see that it was asked."""

    name = "fixed"

    def __init__(self, backend_id: str) -> None:
        self.backend_id = backend_id
        self.calls = 0

    def pick(self, facts: RequestFacts, pool: PoolSnapshot) -> Pick:
        self.calls += 1
        return Pick(pool.get(self.backend_id), PickReason.PINNED, set_cookie="c=1")


# --- classification ------------------------------------------------------------------------------

CLASSIFY_CASES = [
    # path, query, kind, transport, sid
    ("/socket.io/", "EIO=4&transport=polling&t=Oabc", RequestKind.HANDSHAKE, "polling", None),
    ("/socket.io/", "EIO=4&transport=websocket", RequestKind.HANDSHAKE, "websocket", None),
    ("/socket.io", "EIO=4&transport=polling", RequestKind.HANDSHAKE, "polling", None),
    ("/socket.io/", "EIO=4", RequestKind.HANDSHAKE, "polling", None),  # polling is the default
    ("/socket.io/", "EIO=4&transport=polling&sid=x.y.z", RequestKind.SESSION, "polling", "x.y.z"),
    ("/socket.io/", "sid=a%2Eb&EIO=4&transport=websocket", RequestKind.SESSION, "websocket", "a.b"),
    ("/socket.io/extra", "EIO=4&sid=q", RequestKind.SESSION, "polling", "q"),
]


@pytest.mark.parametrize(("path", "query", "kind", "transport", "sid"), CLASSIFY_CASES)
def test_classify(
    path: str, query: str, kind: RequestKind, transport: str, sid: str | None
) -> None:
    request = classify(path, query)
    assert request is not None
    assert (request.kind, request.transport, request.sid) == (kind, transport, sid)


@pytest.mark.parametrize("path", ["/", "/socket.iox/", "/api/socket.io/", "/socket"])
def test_classify_other_paths(path: str) -> None:
    assert classify(path, "EIO=4&transport=polling") is None


def test_classify_custom_prefix() -> None:
    assert classify("/rt/", "EIO=4", "/rt/") is not None
    assert classify("/socket.io/", "EIO=4", "/rt/") is None


def test_classify_counts_duplicate_sids() -> None:
    request = classify("/socket.io/", "sid=a&sid=b")
    assert request is not None and request.sid == "a" and request.sid_count == 2


REPLACE_CASES = [
    ("EIO=4&transport=polling&t=x&sid=tok", "EIO=4&transport=polling&t=x&sid=orig"),
    ("sid=tok", "sid=orig"),
    ("sid=tok&EIO=4&&b=%20+", "sid=orig&EIO=4&b=%20+"),
]


@pytest.mark.parametrize(("query", "expected"), REPLACE_CASES)
def test_replace_sid_keeps_other_fields(query: str, expected: str) -> None:
    assert replace_sid(query, "orig") == expected


# --- tokens --------------------------------------------------------------------------------------


def test_token_round_trip_and_shape() -> None:
    codec = SidCodec(SECRET)
    token = codec.mint(SID, "b")
    assert token.startswith(SID + ".")
    assert "127.0.0.1" not in token and ":" not in token
    sid, tag = codec.open(token)
    assert sid == SID and tag == codec.backend_tag("b")


def test_two_processes_with_one_secret_agree() -> None:
    token = SidCodec(SECRET).mint(SID, "b")
    assert SidCodec(SECRET.decode()).open(token)[0] == SID
    with pytest.raises(TokenError):
        SidCodec(b"other").open(token)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "plain-sid",
        "a.b",
        "a..",
        f"{SID}.short.short",
        f"{SID}.{'A' * 11}.{'A' * 22}",  # well formed, wrong mac
        f"{SID}.{'A' * 11}.{'A' * 21}!",
        f"bad sid.{'A' * 11}.{'A' * 22}",
    ],
)
def test_malformed_or_forged_tokens_are_refused(token: str) -> None:
    with pytest.raises(TokenError):
        SidCodec(SECRET).open(token)


def test_every_single_character_change_is_refused() -> None:
    codec = SidCodec(SECRET)
    token = codec.mint(SID, "b")
    for i, ch in enumerate(token):
        for other in {"A", "b", "_", "."} - {ch}:
            forged = token[:i] + other + token[i + 1 :]
            with pytest.raises(TokenError):
                codec.open(forged)


def test_unsafe_backend_sid_cannot_be_minted() -> None:
    with pytest.raises(OpenPacketError):
        SidCodec(SECRET).mint("has/slash+plus", "b")


def test_empty_secret_and_bad_path_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        SidCodec(b"")
    with pytest.raises(ConfigError):
        EngineIOPolicy(secret=SECRET, path="socket.io/")


# --- decisions -----------------------------------------------------------------------------------


def test_handshake_picks_a_healthy_backend_round_robin() -> None:
    policy = EngineIOPolicy(secret=SECRET)
    seen = []
    for _ in range(6):
        d = policy.decide(facts("EIO=4&transport=polling&t=1"), HEALTHY3)
        assert d.pick.reason is PickReason.NEW and d.pick.backend is not None
        assert d.rewrite == "polling" and d.strip_headers == ("accept-encoding",)
        assert d.upstream_query == "EIO=4&transport=polling&t=1"
        seen.append(d.pick.backend.id)
    assert seen == ["a", "b", "c", "a", "b", "c"]


def test_websocket_only_handshake_rewrites_the_first_frame() -> None:
    d = EngineIOPolicy(secret=SECRET).decide(facts("EIO=4&transport=websocket"), HEALTHY3)
    assert d.rewrite == "websocket" and d.strip_headers == ("sec-websocket-extensions",)


def test_handshake_skips_draining_and_ejected() -> None:
    snap = pool(BackendState.DRAINING, BackendState.EJECTED, BackendState.HEALTHY)
    policy = EngineIOPolicy(secret=SECRET)
    ids = {policy.decide(facts("EIO=4"), snap).pick.backend.id for _ in range(5)}  # type: ignore[union-attr]
    assert ids == {"c"}


def test_least_connections_balance() -> None:
    snap = PoolSnapshot(
        "p",
        (
            BackendView("a", "h:1", open=5),
            BackendView("b", "h:2", open=1),
            BackendView("c", "h:3", open=3),
        ),
    )
    policy = EngineIOPolicy(secret=SECRET, balancer=build_balancer("least-connections"))
    assert policy.pick(facts("EIO=4"), snap).backend.id == "b"  # type: ignore[union-attr]


def test_handshake_with_no_healthy_backend_is_no_backend() -> None:
    snap = pool(BackendState.EJECTED, BackendState.DRAINING)
    d = EngineIOPolicy(secret=SECRET).decide(facts("EIO=4"), snap)
    assert d.pick == Pick(None, PickReason.NO_BACKEND)


def session_query(token: str, transport: str = "polling") -> str:
    return f"EIO=4&transport={transport}&t=abc&sid={token}"


@pytest.mark.parametrize("transport", ["polling", "websocket"])
@pytest.mark.parametrize("state", [BackendState.HEALTHY, BackendState.DRAINING])
def test_session_request_goes_to_its_pin_with_the_original_sid(
    transport: str, state: BackendState
) -> None:
    policy = EngineIOPolicy(secret=SECRET)
    snap = pool(BackendState.HEALTHY, state, BackendState.HEALTHY)
    token = policy.mint(SID, "b")
    d = policy.decide(facts(session_query(token, transport)), snap)
    assert d.pick.reason is PickReason.PINNED and d.pick.backend is not None
    assert d.pick.backend.id == "b"
    assert d.upstream_query == f"EIO=4&transport={transport}&t=abc&sid={SID}"
    assert d.sid == SID and d.rewrite is None and d.strip_headers == ()


def test_another_proxy_with_the_same_secret_routes_the_same() -> None:
    token = EngineIOPolicy(secret=SECRET).mint(SID, "c")
    d = EngineIOPolicy(secret=SECRET).decide(facts(session_query(token)), HEALTHY3)
    assert d.pick.backend is not None and d.pick.backend.id == "c"


REJECT_CASES = [
    ("tampered", lambda tok: tok[:-1] + ("A" if tok[-1] != "A" else "B"), HEALTHY3),
    ("raw backend sid", lambda tok: SID, HEALTHY3),
    ("ejected pin", lambda tok: tok, pool(BackendState.HEALTHY, BackendState.EJECTED)),
    ("removed pin", lambda tok: tok, pool(BackendState.HEALTHY, names="a")),
    ("duplicate sid", lambda tok: f"{tok}&sid={tok}", HEALTHY3),
    ("empty sid", lambda tok: "", HEALTHY3),
]


@pytest.mark.parametrize(("case", "mangle", "snap"), REJECT_CASES, ids=[c[0] for c in REJECT_CASES])
def test_session_request_is_rejected(case: str, mangle: object, snap: PoolSnapshot) -> None:
    policy = EngineIOPolicy(secret=SECRET)
    token = policy.mint(SID, "b")
    d = policy.decide(facts(session_query(mangle(token))), snap)  # type: ignore[operator]
    assert d.pick == Pick(None, PickReason.REJECTED)
    assert d.upstream_query == session_query(mangle(token))  # type: ignore[operator]


def test_token_from_another_secret_is_rejected() -> None:
    token = EngineIOPolicy(secret=b"other").mint(SID, "b")
    d = EngineIOPolicy(secret=SECRET).decide(facts(session_query(token)), HEALTHY3)
    assert d.pick.reason is PickReason.REJECTED


def test_other_paths_use_the_fallback() -> None:
    fallback = Fixed("c")
    policy = EngineIOPolicy(secret=SECRET, fallback=fallback)
    d = policy.decide(facts("x=1", path="/index.html"), HEALTHY3)
    assert d.request is None and d.rewrite is None
    assert d.pick == Pick(HEALTHY3.get("c"), PickReason.PINNED, set_cookie="c=1")
    assert fallback.calls == 1
    assert policy.pick(facts("EIO=4"), HEALTHY3).reason is PickReason.NEW
    assert fallback.calls == 1


def test_other_paths_without_fallback_balance() -> None:
    policy = EngineIOPolicy(secret=SECRET)
    assert policy.pick(facts("", path="/"), HEALTHY3).reason is PickReason.NEW
    assert policy.pick(facts("", path="/"), pool()).reason is PickReason.NO_BACKEND


def test_session_unknown_body_is_what_socketio_servers_send() -> None:
    import json

    assert json.loads(SESSION_UNKNOWN_BODY) == {"code": 1, "message": "Session ID unknown"}


def test_a_token_of_another_pool_is_refused() -> None:
    token = SidCodec(SECRET, "chat").mint(SID, "b")
    with pytest.raises(TokenError):
        SidCodec(SECRET, "games").open(token)
    sid, tag = SidCodec(SECRET, "chat").open(token)
    assert sid == SID
    assert SidCodec(SECRET, "games").backend_for(tag, HEALTHY3) is None
    assert SidCodec(SECRET, "chat").backend_for(tag, HEALTHY3) == HEALTHY3.get("b")


def test_factory_builds_engineio_with_cookie_fallback() -> None:
    spec = AffinitySpec.from_flag("engineio")
    policy = build_policy(spec, secret=SECRET, pool_name="p")
    assert isinstance(policy, EngineIOPolicy) and policy.name == "engineio"
    assert policy.fallback is not None and policy.fallback.name == "cookie"
    page = policy.pick(facts("", path="/index.html"), HEALTHY3)
    assert page.set_cookie is not None and page.set_cookie.startswith("limpet=")
    handshake = policy.decide(facts("EIO=4&transport=polling"), HEALTHY3)
    assert handshake.pick.set_cookie is None and handshake.rewrite == "polling"
    token = policy.mint(SID, "a")
    again = build_policy(spec, secret=SECRET, pool_name="p")
    assert again.pick(facts(session_query(token)), HEALTHY3).backend == HEALTHY3.get("a")


def test_factory_honours_the_engineio_path() -> None:
    from dataclasses import replace

    spec = replace(AffinitySpec.from_flag("engineio"), engineio_path="/rt/")
    policy = build_policy(spec, secret=SECRET)
    assert isinstance(policy, EngineIOPolicy)
    assert policy.decide(facts("EIO=4", path="/rt/"), HEALTHY3).rewrite == "polling"
    assert policy.decide(facts("EIO=4", path="/socket.io/"), HEALTHY3).request is None


def test_pick_carries_the_decision_for_engineio_requests_only() -> None:
    fallback = Fixed("c")
    policy = EngineIOPolicy(secret=SECRET, fallback=fallback)
    page = policy.pick(facts("", path="/"), HEALTHY3)
    assert type(page) is Pick
    token = policy.mint(SID, "a")
    pinned = policy.pick(facts(session_query(token)), HEALTHY3)
    assert isinstance(pinned, EngineIOPick) and pinned.decision is not None
    assert pinned.backend == HEALTHY3.get("a") and pinned.reason is PickReason.PINNED
    assert pinned.decision.upstream_query == session_query(SID)
    rejected = policy.pick(facts(session_query("forged")), HEALTHY3)
    assert isinstance(rejected, EngineIOPick) and rejected.reason is PickReason.REJECTED
