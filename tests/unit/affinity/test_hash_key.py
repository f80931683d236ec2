"""Hash affinity on a header, cookie or query value."""

from __future__ import annotations

import collections
from dataclasses import replace

import pytest

from limpet.affinity.base import PickReason, RequestFacts
from limpet.affinity.hash_key import HashPolicy
from limpet.affinity.spec import AffinitySpec
from limpet.balancing.round_robin import RoundRobin
from limpet.pool.pool import Pool


def make_pool(n: int = 5) -> Pool:
    return Pool("web", [(f"b{i}", f"127.0.0.1:{9000 + i}") for i in range(n)])


def policy(flag: str, **changes: object) -> HashPolicy:
    spec = replace(AffinitySpec.from_flag(flag), **changes)  # type: ignore[arg-type]
    return HashPolicy(spec, balancer=RoundRobin())


@pytest.mark.parametrize(
    ("flag", "facts"),
    [
        ("hash:header:X-User", RequestFacts("1.1.1.1", headers={"x-user": "alice"})),
        ("hash:header:x-user", RequestFacts("1.1.1.1", headers={"x-user": "alice"})),
        ("hash:cookie:uid", RequestFacts("1.1.1.1", cookies={"uid": "alice"})),
        ("hash:query:room", RequestFacts("1.1.1.1", query="a=1&room=alice&b=2")),
        ("hash:query:room", RequestFacts("1.1.1.1", query="room=alice&room=bob")),
    ],
)
def test_each_source_reads_its_key(flag: str, facts: RequestFacts) -> None:
    pol = policy(flag)
    assert pol.key(facts) == "alice"
    pool = make_pool()
    picks = {pol.pick(facts, pool.snapshot()).backend for _ in range(20)}
    assert len(picks) == 1
    assert pol.pick(facts, pool.snapshot()).reason is PickReason.HASHED


def test_same_key_same_backend_across_sources_and_instances() -> None:
    pool = make_pool()
    a = policy("hash:header:X-User")
    b = policy("hash:query:u")
    for i in range(100):
        user = f"user{i}"
        assert (
            a.pick(RequestFacts("x", headers={"x-user": user}), pool.snapshot()).backend
            == b.pick(RequestFacts("y", query=f"u={user}"), pool.snapshot()).backend
        )


@pytest.mark.parametrize(
    "facts",
    [
        RequestFacts("1.1.1.1"),
        RequestFacts("1.1.1.1", headers={"x-user": ""}),
        RequestFacts("1.1.1.1", headers={"x-other": "alice"}),
    ],
)
def test_missing_key_falls_back_to_balancing(facts: RequestFacts) -> None:
    pol, pool = policy("hash:header:X-User"), make_pool()
    assert pol.key(facts) is None
    picks = [pol.pick(facts, pool.snapshot()) for _ in range(5)]
    assert {p.reason for p in picks} == {PickReason.NEW}
    assert len({p.backend for p in picks}) == 5  # round robin: the twin of stickiness


def test_keys_spread() -> None:
    pol, pool = policy("hash:header:X-User"), make_pool(4)
    counts = collections.Counter(
        pol.pick(RequestFacts("x", headers={"x-user": f"u{i}"}), pool.snapshot()).backend.id  # type: ignore[union-attr]
        for i in range(4000)
    )
    assert max(counts.values()) < 1.15 * 1000 and len(counts) == 4


def test_drained_backend_loses_its_keys_others_keep_theirs() -> None:
    pol, pool = policy("hash:cookie:sid"), make_pool(5)
    keys = [f"s{i}" for i in range(1000)]
    before = {
        k: pol.pick(RequestFacts("x", cookies={"sid": k}), pool.snapshot()).backend for k in keys
    }
    pool.drain("b2")
    after = {
        k: pol.pick(RequestFacts("x", cookies={"sid": k}), pool.snapshot()).backend for k in keys
    }
    assert all(b is not None and b.id != "b2" for b in after.values())
    kept = sum(
        1
        for k in keys
        if before[k] is not None and before[k].id != "b2" and after[k].id == before[k].id
    )  # type: ignore[union-attr]
    others = sum(1 for k in keys if before[k] is not None and before[k].id != "b2")  # type: ignore[union-attr]
    assert kept > 0.9 * others


def test_bounded_load_spills_from_a_full_backend() -> None:
    pool = make_pool(4)
    facts = RequestFacts("x", headers={"x-user": "hot"})
    plain = policy("hash:header:X-User")
    home = plain.pick(facts, pool.snapshot()).backend
    assert home is not None
    for _ in range(20):
        pool.opened(home.id)
    bounded = policy("hash:header:X-User", hash_balance_factor=125)
    spilled = bounded.pick(facts, pool.snapshot()).backend
    assert spilled is not None and spilled.id != home.id
    # twin: without the bound the hot key stays on its full backend
    assert plain.pick(facts, pool.snapshot()).backend == home


def test_no_backend() -> None:
    pool = make_pool(1)
    pool.drain("b0")
    pol = policy("hash:header:X-User")
    for facts in (RequestFacts("x", headers={"x-user": "a"}), RequestFacts("x")):
        assert pol.pick(facts, pool.snapshot()).reason is PickReason.NO_BACKEND
