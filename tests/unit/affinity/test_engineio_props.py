"""Hypothesis properties of the engineio policy: tokens, tamper rejection, framing, payloads."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from limpet.affinity.base import PickReason, RequestFacts
from limpet.affinity.engineio import (
    EngineIOPolicy,
    OpenFrameRewriter,
    SidCodec,
    encode_frame_header,
    rewrite_open_frame,
    rewrite_open_payload,
)
from limpet.errors import TokenError
from limpet.pool.model import BackendView, PoolSnapshot

sids = st.text(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~", min_size=1, max_size=64
)
secrets = st.binary(min_size=1, max_size=64)
backend_ids = st.text(min_size=1, max_size=40)


@given(secret=secrets, sid=sids, backend=backend_ids)
def test_token_round_trip(secret: bytes, sid: str, backend: str) -> None:
    minted = SidCodec(secret).mint(sid, backend)
    other_process = SidCodec(secret)
    assert other_process.open(minted) == (sid, other_process.backend_tag(backend))
    assert all(c.isascii() and (c.isalnum() or c in "-_.~") for c in minted)


@given(secret=secrets, sid=sids, backend=backend_ids, data=st.data())
def test_any_change_to_a_token_is_refused(
    secret: bytes, sid: str, backend: str, data: st.DataObject
) -> None:
    codec = SidCodec(secret)
    token = codec.mint(sid, backend)
    i = data.draw(st.integers(0, len(token) - 1))
    ch = data.draw(st.sampled_from("Aa0_-.~").filter(lambda c: c != token[i]))
    forged = token[:i] + ch + token[i + 1 :]
    try:
        opened = codec.open(forged)
    except TokenError:
        return
    # a '.' moved inside the sid part can re-split into the same sid/tag/mac only if unchanged
    raise AssertionError(f"forged token {forged!r} opened as {opened!r}")


@given(secret=secrets, other=secrets, sid=sids, backend=backend_ids)
def test_another_secret_refuses(secret: bytes, other: bytes, sid: str, backend: str) -> None:
    if secret == other:
        return
    try:
        SidCodec(other).open(SidCodec(secret).mint(sid, backend))
    except TokenError:
        return
    raise AssertionError("token opened with another secret")


@given(n=st.integers(1, 12), which=st.data(), sid=sids)
def test_session_always_returns_to_its_backend(n: int, which: st.DataObject, sid: str) -> None:
    snap = PoolSnapshot("p", tuple(BackendView(f"pod-{i}", f"127.0.0.1:{i + 1}") for i in range(n)))
    pin = which.draw(st.sampled_from(snap.backends))
    token = EngineIOPolicy(secret=b"k").mint(sid, pin.id)
    d = EngineIOPolicy(secret=b"k").decide(
        RequestFacts("127.0.0.1", "/socket.io/", f"EIO=4&transport=polling&sid={token}"), snap
    )
    assert d.pick.reason is PickReason.PINNED and d.pick.backend == pin
    assert d.upstream_query == f"EIO=4&transport=polling&sid={sid}"


def mint(sid: str) -> str:
    return sid + ".T0K3N"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
handshakes = st.dictionaries(
    st.text(max_size=10).filter(lambda k: k != "sid"), json_values, max_size=5
)
packet_texts = st.text(max_size=30).filter(lambda t: "\x1e" not in t)


@given(extra=handshakes, sid=sids, packets=st.lists(packet_texts, max_size=5))
def test_payload_rewrite_changes_only_the_sid(
    extra: dict[str, object], sid: str, packets: list[str]
) -> None:
    body = ("0" + json.dumps({"sid": sid, **extra})).encode()
    body = b"\x1e".join([body, *(p.encode() for p in packets)])
    out = rewrite_open_payload(body, mint)
    first, *rest = out.split(b"\x1e")
    assert json.loads(first[1:]) == {**extra, "sid": mint(sid)}
    assert rest == [p.encode() for p in packets]


@settings(max_examples=60)
@given(
    pad=st.one_of(st.integers(0, 200), st.integers(65400, 65700)),
    tail=st.binary(max_size=300),
    chunks=st.lists(st.integers(1, 5000), min_size=1, max_size=40),
)
def test_frame_rewrite_whatever_the_chunking(pad: int, tail: bytes, chunks: list[int]) -> None:
    packet = ('0{"sid":"abc","pad":"' + "p" * pad + '"}').encode()
    stream = encode_frame_header(0x1, len(packet)) + packet + tail
    whole = rewrite_open_frame(stream, mint)
    assert whole is not None
    expected = whole[0] + whole[1]
    rewriter = OpenFrameRewriter(mint)
    out, at, i = b"", 0, 0
    while at < len(stream):
        step = chunks[i % len(chunks)]
        out += rewriter.feed(stream[at : at + step])
        at, i = at + step, i + 1
    assert out == expected
    assert out.endswith(tail)
    payload = ('0{"sid":"abc.T0K3N","pad":"' + "p" * pad + '"}').encode()
    assert out[: len(out) - len(tail)] == encode_frame_header(0x1, len(payload)) + payload
