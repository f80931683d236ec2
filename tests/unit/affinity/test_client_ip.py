"""Client-IP affinity with Kubernetes semantics: inactivity timeout, stable pins, repins."""

from __future__ import annotations

import collections
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from limpet.affinity.base import PickReason, RequestFacts
from limpet.affinity.client_ip import ClientIPPolicy, normalize_ip
from limpet.affinity.spec import AffinitySpec
from limpet.pool.health import HealthEvent
from limpet.pool.pool import Pool

SPEC = AffinitySpec(mode="client-ip", client_ip_timeout=100)


def make_pool(n: int = 3) -> Pool:
    return Pool("web", [(f"b{i}", f"127.0.0.1:{9000 + i}") for i in range(n)])


def at(ip: str, now: float) -> RequestFacts:
    return RequestFacts(ip, now=now)


def test_default_timeout_is_kubernetes_default() -> None:
    assert ClientIPPolicy(AffinitySpec(mode="client-ip")).timeout == 10800


def test_a_client_stays_on_its_backend() -> None:
    pol, pool = ClientIPPolicy(SPEC), make_pool(5)
    first = pol.pick(at("127.0.0.2", 0.0), pool.snapshot())
    assert first.reason is PickReason.NEW and first.set_cookie is None
    for t in range(1, 50):
        pick = pol.pick(at("127.0.0.2", float(t)), pool.snapshot())
        assert pick.backend == first.backend and pick.reason is PickReason.PINNED


def test_clients_spread_over_backends() -> None:
    pol, pool = ClientIPPolicy(SPEC), make_pool(4)
    counts = collections.Counter(
        pol.pick(at(f"10.0.{i // 256}.{i % 256}", 0.0), pool.snapshot()).backend.id  # type: ignore[union-attr]
        for i in range(4000)
    )
    assert set(counts) == {"b0", "b1", "b2", "b3"}
    assert max(counts.values()) < 1.15 * 1000


def test_pin_survives_a_scale_up_until_the_timeout() -> None:
    pol, pool = ClientIPPolicy(SPEC), make_pool(3)
    ips = [f"10.1.0.{i}" for i in range(200)]
    before = {ip: pol.pick(at(ip, 0.0), pool.snapshot()).backend for ip in ips}
    pool.set_members([(f"b{i}", f"127.0.0.1:{9000 + i}", False) for i in range(4)], 0.0)
    assert all(pol.pick(at(ip, 50.0), pool.snapshot()).backend == before[ip] for ip in ips)
    # twin: a fresh policy (no table) hashes over 4 backends and moves about a quarter
    fresh = ClientIPPolicy(SPEC)
    moved = sum(1 for ip in ips if fresh.pick(at(ip, 50.0), pool.snapshot()).backend != before[ip])
    assert moved > 20


def test_inactivity_timeout_refreshes_on_every_request() -> None:
    pol, pool = ClientIPPolicy(SPEC), make_pool(3)
    pin = pol.pick(at("10.0.0.1", 0.0), pool.snapshot()).backend
    assert pin is not None
    pool.set_members([(f"b{i}", f"127.0.0.1:{9000 + i}", False) for i in range(40)], 0.0)
    # requests every 90 s keep the pin forever (timeout 100 s of inactivity)
    for t in range(90, 2000, 90):
        assert pol.pick(at("10.0.0.1", float(t)), pool.snapshot()).backend == pin


@given(st.floats(min_value=0, max_value=1e9), st.integers(1, 86400))
@settings(max_examples=30, deadline=None)
def test_expiry_with_time_as_a_parameter(now: float, timeout: int) -> None:
    pol = ClientIPPolicy(replace(SPEC, client_ip_timeout=timeout))
    pool = make_pool(3)
    pol.pick(at("10.0.0.1", now), pool.snapshot())
    seen = now + timeout / 2
    assert pol.pick(at("10.0.0.1", seen), pool.snapshot()).reason is PickReason.PINNED
    # one second past the timeout: (seen + timeout) - seen may round below timeout in floats
    later = seen + timeout + 1
    assert pol.pick(at("10.0.0.1", later), pool.snapshot()).reason is PickReason.NEW


def test_expired_pin_is_hashed_again() -> None:
    pol, pool = ClientIPPolicy(SPEC), make_pool(3)
    ips = [f"10.2.0.{i}" for i in range(100)]
    for ip in ips:
        pol.pick(at(ip, 0.0), pool.snapshot())
    pool.set_members([(f"b{i}", f"127.0.0.1:{9000 + i}", False) for i in range(6)], 0.0)
    fresh = ClientIPPolicy(SPEC)
    for ip in ips:  # after the timeout both agree with a policy that never saw the client
        assert (
            pol.pick(at(ip, 200.0), pool.snapshot()).backend
            == fresh.pick(at(ip, 200.0), pool.snapshot()).backend
        )


def test_draining_pin_keeps_clients_ejected_pin_repins() -> None:
    pol, pool = ClientIPPolicy(SPEC), make_pool(3)
    pin = pol.pick(at("10.0.0.1", 0.0), pool.snapshot()).backend
    assert pin is not None
    pool.drain(pin.id)
    assert pol.pick(at("10.0.0.1", 1.0), pool.snapshot()).backend == pool.snapshot().get(pin.id)
    for _ in range(3):
        pool.record(pin.id, HealthEvent.PROBE_FAIL, 2.0)
    moved = pol.pick(at("10.0.0.1", 3.0), pool.snapshot())
    assert moved.reason is PickReason.REPINNED
    assert moved.backend is not None and moved.backend.id != pin.id and moved.backend.takes_new
    assert pol.pick(at("10.0.0.1", 4.0), pool.snapshot()).backend == moved.backend


def test_proxies_that_saw_the_same_pool_agree() -> None:
    pool = make_pool(7)
    a, b = ClientIPPolicy(SPEC), ClientIPPolicy(SPEC)
    for i in range(300):
        ip = f"192.168.{i // 256}.{i % 256}"
        assert (
            a.pick(at(ip, 0.0), pool.snapshot()).backend
            == b.pick(at(ip, 5.0), pool.snapshot()).backend
        )


def test_table_is_bounded_least_recently_seen_first() -> None:
    pol, pool = ClientIPPolicy(SPEC, max_entries=10), make_pool(3)
    for i in range(25):
        pol.pick(at(f"10.0.0.{i}", float(i)), pool.snapshot())
    assert len(pol) == 10
    assert pol.pick(at("10.0.0.24", 30.0), pool.snapshot()).reason is PickReason.PINNED
    assert pol.pick(at("10.0.0.0", 30.0), pool.snapshot()).reason is PickReason.NEW


def test_expired_entries_are_purged() -> None:
    pol, pool = ClientIPPolicy(SPEC), make_pool(3)
    for i in range(20):
        pol.pick(at(f"10.0.0.{i}", 0.0), pool.snapshot())
    pol.pick(at("10.9.9.9", 500.0), pool.snapshot())
    assert len(pol) == 1


def test_no_backend() -> None:
    pol, pool = ClientIPPolicy(SPEC), make_pool(1)
    pool.drain("b0")
    assert pol.pick(at("10.0.0.1", 0.0), pool.snapshot()).reason is PickReason.NO_BACKEND


@pytest.mark.parametrize(
    ("raw", "norm"), [("::ffff:10.0.0.1", "10.0.0.1"), ("10.0.0.1", "10.0.0.1"), ("::1", "::1")]
)
def test_ipv4_mapped_addresses_are_one_client(raw: str, norm: str) -> None:
    assert normalize_ip(raw) == norm
