"""Cookie affinity: pins, repins, drain, tampering, expiry, attributes, and both modes."""

from __future__ import annotations

import collections
import itertools
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from limpet.affinity.base import Pick, PickReason, RequestFacts
from limpet.affinity.cookie import CookiePolicy, cookie_attributes
from limpet.affinity.spec import AffinitySpec
from limpet.balancing.round_robin import RoundRobin
from limpet.pool.health import HealthEvent
from limpet.pool.pool import Pool

SECRET = b"s" * 32
SPEC = AffinitySpec(mode="cookie", cookie_name="limpet")


def policy(
    spec: AffinitySpec = SPEC, secret: bytes = SECRET, pool_name: str = "web"
) -> CookiePolicy:
    counter = itertools.count()
    return CookiePolicy(
        spec,
        secret=secret,
        pool_name=pool_name,
        balancer=RoundRobin(),
        entropy=lambda n: next(counter).to_bytes(n, "big"),
    )


def make_pool(n: int = 3) -> Pool:
    return Pool("web", [(f"b{i}", f"127.0.0.1:{9000 + i}") for i in range(n)])


def value(pick: Pick) -> str:
    assert pick.set_cookie is not None
    return pick.set_cookie.split(";", 1)[0].split("=", 1)[1]


def facts(token: str | None = None, now: float = 1000.0) -> RequestFacts:
    return RequestFacts(
        "127.0.0.1", cookies={"limpet": token} if token is not None else {}, now=now
    )


class Client:
    """A cookie jar: sends back what it was last given."""

    def __init__(self) -> None:
        self.token: str | None = None

    def request(self, pol: CookiePolicy, pool: Pool, now: float = 1000.0) -> Pick:
        pick = pol.pick(facts(self.token, now), pool.snapshot())
        if pick.set_cookie is not None:
            self.token = value(pick)
        return pick


@pytest.mark.parametrize("mode", ["persistent", "balanced"])
def test_a_client_with_a_cookie_jar_stays_put(mode: str) -> None:
    pol, pool = policy(replace(SPEC, cookie_mode=mode)), make_pool(5)  # type: ignore[arg-type]
    client = Client()
    first = client.request(pol, pool)
    assert first.reason is PickReason.NEW and first.set_cookie is not None
    for _ in range(50):
        pick = client.request(pol, pool)
        assert pick.backend == first.backend
        assert pick.reason is PickReason.PINNED and pick.set_cookie is None


def test_twin_without_the_cookie_the_client_wanders() -> None:
    pol, pool = policy(), make_pool(5)
    seen = {pol.pick(facts(None), pool.snapshot()).backend for _ in range(10)}
    assert len(seen) == 5


def test_the_cookie_never_contains_an_address_or_id() -> None:
    pol, pool = policy(), make_pool(3)
    for _ in range(3):
        token = value(pol.pick(facts(None), pool.snapshot()))
        assert "127.0.0.1" not in token and "900" not in token and "b0" not in token


def test_another_proxy_with_the_same_secret_decides_the_same() -> None:
    pool = make_pool(5)
    a, b = policy(), policy()
    b.balancer.choose(pool.snapshot().eligible(), pool.snapshot())  # b's round robin is elsewhere
    for _ in range(10):
        pick = a.pick(facts(None), pool.snapshot())
        other = b.pick(facts(value(pick)), pool.snapshot())
        assert other.backend == pick.backend and other.reason is PickReason.PINNED


def test_another_secret_or_pool_does_not_honour_the_cookie() -> None:
    pool = make_pool(5)
    token = value(policy().pick(facts(None), pool.snapshot()))
    assert (
        policy(secret=b"x" * 32).pick(facts(token), pool.snapshot()).reason is PickReason.REPINNED
    )
    assert policy(pool_name="api").pick(facts(token), pool.snapshot()).reason is PickReason.REPINNED


@pytest.mark.parametrize("mode", ["persistent", "balanced"])
def test_draining_pin_keeps_its_session_but_takes_no_new_ones(mode: str) -> None:
    pol, pool = policy(replace(SPEC, cookie_mode=mode)), make_pool(3)  # type: ignore[arg-type]
    client = Client()
    pin = client.request(pol, pool).backend
    assert pin is not None
    pool.drain(pin.id)
    for _ in range(5):
        pick = client.request(pol, pool)
        assert pick.backend is not None and pick.backend.id == pin.id
        assert pick.reason is PickReason.PINNED
    for _ in range(20):
        fresh = pol.pick(facts(None), pool.snapshot())
        assert fresh.backend is not None and fresh.backend.id != pin.id


@pytest.mark.parametrize("mode", ["persistent", "balanced"])
@pytest.mark.parametrize("how", ["ejected", "removed"])
def test_lost_pin_is_repinned_with_a_new_cookie_in_the_same_pick(mode: str, how: str) -> None:
    pol, pool = policy(replace(SPEC, cookie_mode=mode)), make_pool(3)  # type: ignore[arg-type]
    client = Client()
    pin = client.request(pol, pool).backend
    assert pin is not None
    old_token = client.token
    if how == "ejected":
        for _ in range(3):
            pool.record(pin.id, HealthEvent.PROBE_FAIL, 0.0)
    else:
        pool.set_members([(b.id, b.address, False) for b in pool.backends() if b.id != pin.id], 0.0)
    pick = client.request(pol, pool)
    assert pick.reason is PickReason.REPINNED
    assert pick.backend is not None and pick.backend.id != pin.id and pick.backend.takes_new
    assert pick.set_cookie is not None and client.token != old_token
    again = client.request(pol, pool)
    assert again.backend == pick.backend and again.reason is PickReason.PINNED


def test_no_healthy_backend_is_no_backend() -> None:
    pol, pool = policy(), make_pool(2)
    for backend in pool.backends():
        pool.drain(backend.id)
    pick = pol.pick(facts(None), pool.snapshot())
    assert pick.backend is None and pick.reason is PickReason.NO_BACKEND and pick.set_cookie is None


@settings(max_examples=200)
@given(st.data())
def test_a_tampered_cookie_is_treated_as_no_pin(data: st.DataObject) -> None:
    pol, pool = policy(), make_pool(3)
    token = value(pol.pick(facts(None), pool.snapshot()))
    index = data.draw(st.integers(0, len(token) - 1))
    char = data.draw(st.sampled_from([c for c in "AQgw-_z09" if c != token[index]]))
    forged = token[:index] + char + token[index + 1 :]
    pick = pol.pick(facts(forged), pool.snapshot())
    assert pick.reason is PickReason.REPINNED and pick.set_cookie is not None


def test_the_signature_is_checked_once_per_token_and_a_tampered_one_still_fails() -> None:
    pol, pool = policy(), make_pool(3)
    token = value(pol.pick(facts(None), pool.snapshot()))
    verified: list[str] = []
    real = pol._codec

    class Counting:
        def verified(self, text: str, body_size: int) -> tuple[int, bytes]:
            verified.append(text)
            return real._verify(text)  # the signature itself, every time it is asked

        def seal(self, body: bytes, *, expires: float | None = None) -> str:
            return real.seal(body, expires=expires)

    pol._codec = Counting()  # type: ignore[assignment]
    for _ in range(5):
        assert pol.pick(facts(token), pool.snapshot()).reason is PickReason.PINNED
    assert verified == [token]  # once, then remembered
    forged = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for _ in range(2):  # refused each time: only tokens that verified are remembered
        pick = pol.pick(facts(forged), pool.snapshot())
        assert pick.reason is PickReason.REPINNED and pick.set_cookie is not None
    assert verified == [token, forged, forged]
    # a new snapshot (a pin ejected) is decided afresh, not from what was remembered
    pin = pol.pick(facts(token), pool.snapshot()).backend
    assert pin is not None
    for _ in range(3):
        pool.record(pin.id, HealthEvent.PROBE_FAIL, 0.0)
    assert pol.pick(facts(token), pool.snapshot()).reason is PickReason.REPINNED


@given(st.text(max_size=100))
def test_garbage_cookies_never_crash(text: str) -> None:
    pol, pool = policy(), make_pool(3)
    pick = pol.pick(facts(text), pool.snapshot())
    assert pick.reason is PickReason.REPINNED and pick.backend is not None


@given(st.floats(min_value=0, max_value=2e9), st.integers(min_value=1, max_value=10**6))
def test_expired_cookie_is_repinned(now: float, ttl: int) -> None:
    pol, pool = policy(replace(SPEC, cookie_ttl=ttl)), make_pool(3)
    token = value(pol.pick(facts(None, now), pool.snapshot()))
    assert pol.pick(facts(token, now + ttl - 1), pool.snapshot()).reason is PickReason.PINNED
    late = pol.pick(facts(token, now + ttl + 1), pool.snapshot())
    assert late.reason is PickReason.REPINNED and late.set_cookie is not None


def test_session_cookie_token_never_expires() -> None:
    pol, pool = policy(replace(SPEC, cookie_ttl=0)), make_pool(3)
    pick = pol.pick(facts(None, 0.0), pool.snapshot())
    assert "Max-Age" not in (pick.set_cookie or "")
    assert pol.pick(facts(value(pick), 4e9), pool.snapshot()).reason is PickReason.PINNED


@pytest.mark.parametrize(
    ("changes", "suffix"),
    [
        ({}, "; Path=/; HttpOnly; SameSite=Lax"),
        (
            {
                "cookie_ttl": 3600,
                "cookie_domain": "example.com",
                "cookie_secure": True,
                "cookie_samesite": "None",
                "cookie_path": "/app",
            },
            "; Path=/app; Domain=example.com; Max-Age=3600; Secure; HttpOnly; SameSite=None",
        ),
        ({"cookie_httponly": False, "cookie_samesite": None}, "; Path=/"),
        ({"cookie_samesite": "Strict"}, "; Path=/; HttpOnly; SameSite=Strict"),
    ],
)
def test_cookie_attributes(changes: dict[str, object], suffix: str) -> None:
    spec = replace(SPEC, **changes)  # type: ignore[arg-type]
    assert cookie_attributes(spec) == suffix
    pick = policy(spec).pick(facts(None), make_pool(1).snapshot())
    assert pick.set_cookie is not None
    assert pick.set_cookie.startswith("limpet=") and pick.set_cookie.endswith(suffix)


def _sessions(mode: str, n: int, clients: int) -> tuple[CookiePolicy, Pool, list[Client]]:
    pol = policy(replace(SPEC, cookie_mode=mode))  # type: ignore[arg-type]
    pool = make_pool(n)
    jar = [Client() for _ in range(clients)]
    for client in jar:
        client.request(pol, pool)
    return pol, pool, jar


def test_balanced_moves_about_one_in_n_plus_one_sessions_on_scale_up() -> None:
    pol, pool, jar = _sessions("balanced", 4, 2000)
    before = [c.request(pol, pool).backend for c in jar]
    pool.set_members([(f"b{i}", f"127.0.0.1:{9000 + i}", False) for i in range(5)], 0.0)
    after = [c.request(pol, pool) for c in jar]
    moved = [p for b, p in zip(before, after, strict=True) if p.backend != b]
    assert all(p.reason is PickReason.REPINNED and p.set_cookie for p in moved)
    to_new = [p for p in moved if p.backend is not None and p.backend.id == "b4"]
    assert 0.15 < len(to_new) / len(jar) < 0.25  # ~ 1/5 of the sessions fill the new backend
    assert len(moved) - len(to_new) < 0.1 * len(jar)  # Maglev's small excess disruption
    # and they stay where they moved
    assert all(c.request(pol, pool).reason is PickReason.PINNED for c in jar)


def test_twin_persistent_moves_nobody_on_scale_up() -> None:
    pol, pool, jar = _sessions("persistent", 4, 500)
    before = [c.request(pol, pool).backend for c in jar]
    pool.set_members([(f"b{i}", f"127.0.0.1:{9000 + i}", False) for i in range(5)], 0.0)
    after = [c.request(pol, pool).backend for c in jar]
    assert after == before


def test_balanced_new_sessions_spread() -> None:
    pool = make_pool(4)
    pol = policy(replace(SPEC, cookie_mode="balanced"))
    spread = collections.Counter(
        pol.pick(facts(None), pool.snapshot()).backend.id  # type: ignore[union-attr]
        for _ in range(4000)
    )
    assert set(spread) == {"b0", "b1", "b2", "b3"}
    assert max(spread.values()) < 1.15 * 1000


@settings(max_examples=40, deadline=None)
@given(
    st.binary(min_size=1, max_size=64),
    st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=12, unique=True),
    st.sampled_from(["persistent", "balanced"]),
)
def test_two_instances_with_the_same_secret_agree(secret: bytes, ids: list[str], mode: str) -> None:
    pool = Pool("web", [(backend_id, f"127.0.0.1:{9000 + i}") for i, backend_id in enumerate(ids)])
    spec = replace(SPEC, cookie_mode=mode)  # type: ignore[arg-type]
    a = CookiePolicy(spec, secret=secret, pool_name="web", balancer=RoundRobin())
    b = CookiePolicy(spec, secret=secret, pool_name="web", balancer=RoundRobin())
    for _ in range(len(ids)):
        minted = a.pick(facts(None), pool.snapshot())
        honoured = b.pick(facts(value(minted)), pool.snapshot())
        assert honoured.backend == minted.backend and honoured.reason is PickReason.PINNED


@pytest.mark.parametrize("mode", ["persistent", "balanced"])
@pytest.mark.parametrize("change", ["none", "expire", "eject", "drain", "grow"])
def test_the_remembered_pin_decides_as_a_policy_that_remembers_nothing(
    mode: str, change: str
) -> None:
    # the warm policy answers a known token from its per-snapshot cache (CookiePolicy._sticky);
    # a fresh policy with the same secret verifies every token afresh: both pin alike, before
    # and after the change, on the first request that sees it and on the next ones
    spec = replace(SPEC, cookie_mode=mode, cookie_ttl=100)  # type: ignore[arg-type]
    warm, pool, now = policy(spec), make_pool(3), 1000.0
    tokens = [value(warm.pick(facts(None, now), pool.snapshot())) for _ in range(12)]

    def alike() -> None:
        snap, fresh = pool.snapshot(), policy(spec)  # (asked once per token: never from memory)
        for token in tokens:
            cold = fresh.pick(facts(token, now), snap)
            for _ in range(2):  # the second: the token is known for this snapshot
                got = warm.pick(facts(token, now), snap)
                assert got.reason is cold.reason, token
                if got.reason is PickReason.PINNED:  # (a new placement is the balancer's)
                    assert got.backend == cold.backend, token

    alike()
    if change == "expire":
        now += 101
    elif change == "eject":
        for _ in range(3):
            pool.record("b0", HealthEvent.PROBE_FAIL, now)
    elif change == "drain":
        pool.drain("b0")
    elif change == "grow":  # a scale-up: balanced moves some sessions, persistent none
        pool.set_members([(f"b{i}", f"127.0.0.1:{9000 + i}", False) for i in range(4)], now)
    alike()
